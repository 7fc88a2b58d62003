-- A second factor: TOTP (RFC 6238) with recovery codes, and the challenge a login answers
-- with while the factor is outstanding.
--
-- `users.mfa_enabled` is set and cleared with the factor, in the transaction that moves the
-- user's epoch (a login in flight cannot skip a factor enrolled meanwhile).
ALTER TABLE users ADD COLUMN mfa_enabled boolean NOT NULL DEFAULT false;

-- How a session's login was authenticated (RFC 8176 `amr` values, space-separated): its
-- access tokens carry it, refreshed ones too.
ALTER TABLE sessions ADD COLUMN amr text NOT NULL DEFAULT 'pwd';

-- One TOTP secret per user, sealed with AUTH_KEY_ENCRYPTION_KEY (AES-256-GCM, the user id
-- as associated data). `confirmed_at` is null until a first code proved the enrolment.
-- `last_step` is the time step of the last code accepted: a code is good once.
CREATE TABLE mfa_totp (
    user_id      uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       bytea       NOT NULL,
    confirmed_at timestamptz,
    last_step    bigint      NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- Ten one-time recovery codes per enrolment, by SHA-256 (each has 80 random bits).
CREATE TABLE mfa_recovery_codes (
    code_hash  bytea       PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    used_at    timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mfa_recovery_codes_user ON mfa_recovery_codes (user_id);

-- A login whose password was right, waiting for its second factor: what the password check
-- saw (epoch and role), how the refresh token is to travel, and how many codes were tried.
CREATE TABLE mfa_challenges (
    token_hash       bytea       PRIMARY KEY,
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    auth_epoch       bigint      NOT NULL,
    role             text        NOT NULL,
    refresh_delivery text        NOT NULL,
    attempts         integer     NOT NULL DEFAULT 0,
    expires_at       timestamptz NOT NULL,
    used_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mfa_challenges_expires ON mfa_challenges (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_totp, mfa_recovery_codes, mfa_challenges
    TO auth_service_app;
