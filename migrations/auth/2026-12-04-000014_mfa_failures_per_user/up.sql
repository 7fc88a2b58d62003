-- The day's wrong second-factor codes move to a row per user (from `mfa_totp`, 000012): an
-- account with passkeys only has no app row, and its recovery codes count too. The current
-- day's counts come along.
CREATE TABLE IF NOT EXISTS mfa_failures (
    user_id        uuid        PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    failed_codes   integer     NOT NULL DEFAULT 0,
    failures_since timestamptz
);
GRANT SELECT, INSERT, UPDATE, DELETE ON mfa_failures TO auth_service_app;
INSERT INTO mfa_failures (user_id, failed_codes, failures_since)
    SELECT user_id, failed_codes, failures_since FROM mfa_totp
    WHERE failures_since > now() - interval '1 day'
ON CONFLICT (user_id) DO NOTHING;
ALTER TABLE mfa_totp DROP COLUMN IF EXISTS failed_codes, DROP COLUMN IF EXISTS failures_since;
