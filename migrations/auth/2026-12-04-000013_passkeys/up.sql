-- Passkeys (WebAuthn, `webauthn-rs`): a second factor after the password, or a login on
-- their own (discoverable credentials; the user handle is the user's id).
--
-- `credential` is webauthn-rs's `Passkey` as JSON: the credential id, its public key and
-- signature counter. Nothing in it is secret; it is updated when a login moves the counter.
CREATE TABLE passkeys (
    id            uuid        PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_id bytea       NOT NULL UNIQUE,
    name          text        NOT NULL,
    credential    text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz
);
CREATE INDEX passkeys_user ON passkeys (user_id, created_at);

-- A WebAuthn ceremony in progress: webauthn-rs's state (the challenge and what it allows),
-- kept server side and taken once. `register`: the user adding a passkey, at the epoch it
-- started under; `login`: a passwordless login (no user yet); `mfa`: the second factor of
-- the login challenge whose token hashes to `mfa_token_hash`.
CREATE TABLE webauthn_challenges (
    id               uuid        PRIMARY KEY,
    purpose          text        NOT NULL CHECK (purpose IN ('register', 'login', 'mfa')),
    user_id          uuid        REFERENCES users (id) ON DELETE CASCADE,
    auth_epoch       bigint,
    mfa_token_hash   bytea,
    refresh_delivery text        NOT NULL DEFAULT 'body',
    state            text        NOT NULL,
    expires_at       timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webauthn_challenges_expires ON webauthn_challenges (expires_at);
CREATE INDEX webauthn_challenges_user ON webauthn_challenges (user_id);

GRANT SELECT, INSERT, UPDATE, DELETE ON passkeys, webauthn_challenges TO auth_service_app;
