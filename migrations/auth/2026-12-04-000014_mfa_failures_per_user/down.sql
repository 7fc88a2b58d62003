ALTER TABLE mfa_totp
    ADD COLUMN IF NOT EXISTS failed_codes   integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS failures_since timestamptz;
DROP TABLE mfa_failures;
