-- Admin, service clients, a tamper-evident audit log, an outbox of events for other
-- services, and a database role for the service that cannot rewrite history.

-- Each audit row carries the SHA-256 of the previous row's hash and its own content, so
-- altering or removing a row breaks the chain (`auth-service audit verify`).
ALTER TABLE audit_log
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash      bytea;

-- Append-only for everyone: even the table owner cannot update or delete rows without
-- first disabling this trigger, which is itself visible.
CREATE FUNCTION audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- OAuth 2 clients for service-to-service calls (client credentials). The secret (256
-- random bits) is stored only as a SHA-256 hash.
CREATE TABLE oauth_clients (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    scopes      text[]      NOT NULL,
    secret_hash bytea       NOT NULL,
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Events for other services (user deleted, ...), written in the transaction of the change
-- and published to a Redis stream by a background loop.
CREATE TABLE outbox_events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text        NOT NULL,
    payload      jsonb       NOT NULL,
    published_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_events_unpublished_idx ON outbox_events (id) WHERE published_at IS NULL;

-- Admin listing filters.
CREATE INDEX users_role_idx ON users (role);
CREATE INDEX users_email_lower_prefix_idx ON users (lower(email) text_pattern_ops);

-- The role the service runs as: everything it needs, and no UPDATE or DELETE on the audit
-- log. Created once per cluster; set its password (or use trust on loopback) and point
-- AUTH_DATABASE_URL at it. Migrations run as the owner.
DO $$
BEGIN
    CREATE ROLE auth_service_app LOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON users, sessions, refresh_tokens, signing_keys, revocations, oauth_clients, outbox_events
    TO auth_service_app;
GRANT SELECT, INSERT ON audit_log TO auth_service_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO auth_service_app;
