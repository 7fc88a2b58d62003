-- Bearer checks at the auth service and introspection look revocations up by the token's
-- `jti` (and a client's tokens by its id), on every request: by index, not by scan.
CREATE INDEX revocations_value_idx ON revocations (value, kind);
