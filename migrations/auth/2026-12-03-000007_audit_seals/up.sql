-- Seals of the audit chain: for each row, HMAC-SHA256 of its chain hash under a key that
-- lives only in the service's configuration (AUTH_AUDIT_HMAC_KEY), never in the database.
-- The SHA-256 chain alone can be recomputed by anyone who can write the table (the owner,
-- with the append-only triggers switched off); a row's hash covers every row before it, so
-- rewriting history also changes every later hash, whose seals cannot be redone without
-- the key. Rows are sealed in order, in batches, a second or so after they are appended;
-- `auth-service audit verify` checks every seal, and plain chain links before the first.
CREATE TABLE audit_seals (
    audit_id   bigint      PRIMARY KEY REFERENCES audit_log (id),
    mac        bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION audit_seals_append_only() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    RAISE EXCEPTION 'audit_seals is append-only';
END;
$$;
CREATE TRIGGER audit_seals_no_update_delete
    BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION audit_seals_append_only();
CREATE TRIGGER audit_seals_no_truncate
    BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION audit_seals_append_only();

GRANT SELECT, INSERT ON audit_seals TO auth_service_app;
