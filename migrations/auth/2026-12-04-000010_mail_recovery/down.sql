DROP TABLE email_tokens;
DROP TABLE mail_outbox;
ALTER TABLE users DROP COLUMN email_verified_at;
