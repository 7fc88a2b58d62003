-- The auth services that publish revocations, each with the last time its loop ran (on the
-- database's clock, whatever Redis did). A writer that stops cleanly keeps the Redis lease
-- without expiry only when no other writer has run lately: a writer that is alive but cut
-- off from Redis still beats here, and must make verifiers fail closed, not open.
CREATE TABLE denylist_writers (
    instance     text PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE, DELETE ON denylist_writers TO auth_service_app;
