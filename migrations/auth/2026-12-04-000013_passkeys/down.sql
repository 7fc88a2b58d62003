ALTER TABLE mfa_totp
    ADD COLUMN failed_codes   integer NOT NULL DEFAULT 0,
    ADD COLUMN failures_since timestamptz;
DROP TABLE mfa_failures;
DROP TABLE webauthn_challenges;
DROP TABLE passkeys;
