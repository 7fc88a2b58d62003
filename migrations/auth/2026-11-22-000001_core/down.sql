DROP TABLE revocations;
DROP TABLE audit_log;
DROP TABLE signing_keys;
DROP TABLE refresh_tokens;
DROP TABLE sessions;
DROP TABLE users;
