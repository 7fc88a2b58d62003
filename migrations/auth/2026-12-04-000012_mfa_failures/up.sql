-- Wrong second-factor codes per account and day, kept beside the secret (in PostgreSQL, so
-- that the cap neither locks anyone out nor lets guesses through while Redis is down).
ALTER TABLE mfa_totp
    ADD COLUMN failed_codes   integer NOT NULL DEFAULT 0,
    ADD COLUMN failures_since timestamptz;

-- The epochs of 2026-12-04-000010, for a database that ran an earlier form of it.
ALTER TABLE mail_outbox ADD COLUMN IF NOT EXISTS auth_epoch bigint;
ALTER TABLE email_tokens ADD COLUMN IF NOT EXISTS auth_epoch bigint;
