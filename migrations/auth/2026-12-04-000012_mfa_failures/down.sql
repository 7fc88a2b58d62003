ALTER TABLE mfa_totp DROP COLUMN failures_since, DROP COLUMN failed_codes;
