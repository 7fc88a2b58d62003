-- Email verification and password reset, and the mail they send.
--
-- `email_verified_at` is set when the owner proves the address (a verification link, or a
-- password reset, which the address received). A changed address starts unverified.
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;

-- Mail waits here, written in the transaction of the event that needs it (signup, a reset
-- request, a password change), until the mail worker of some replica sends it over SMTP.
-- A mail server outage loses nothing: rows wait, with backoff, up to AUTH_MAIL_MAX_ATTEMPTS.
-- No row ever holds a usable token: the links' tokens are made by the worker when it sends,
-- and only their hashes are kept (email_tokens). A reset request is written whether or not
-- the address has an account (user_id is null when it has none, and the worker sends
-- nothing), so that both cases do the same work.
CREATE TABLE mail_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL,
    user_id         uuid        REFERENCES users (id) ON DELETE CASCADE,
    recipient       text        NOT NULL,
    payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- The user's epoch when the mail was asked for: a reset or email-change link is not
    -- sent once it moved (a password change, logout everywhere, ... came after).
    auth_epoch      bigint,
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sent', 'skipped', 'failed')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_outbox_due ON mail_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX mail_outbox_created ON mail_outbox (created_at);

-- Single-use tokens sent by mail, by their SHA-256 (the token has 256 random bits).
-- `email` is the address the link went to: a verification is only good for that address.
CREATE TABLE email_tokens (
    token_hash bytea       PRIMARY KEY,
    purpose    text        NOT NULL
               CHECK (purpose IN ('verify_email', 'email_change', 'password_reset')),
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email      text        NOT NULL,
    -- For resets and email changes: the user's epoch the link was asked under; the link is
    -- refused once the epoch moved (any password change, logout everywhere, role change,
    -- disabling, factor change).
    auth_epoch bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_tokens_outstanding ON email_tokens (user_id, purpose) WHERE used_at IS NULL;
CREATE INDEX email_tokens_expires ON email_tokens (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON mail_outbox, email_tokens TO auth_service_app;
