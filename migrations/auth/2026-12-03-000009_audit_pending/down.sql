-- Refuses while events wait to be chained: run `auth-service audit seal` (it chains them)
-- with this release first.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_pending) THEN
        RAISE EXCEPTION 'audit_pending holds events not chained yet; chain them first';
    END IF;
END
$$;
GRANT INSERT ON audit_log TO auth_service_app;
GRANT UPDATE ON audit_head TO auth_service_app;
DROP FUNCTION audit_chain(integer);
DROP TABLE audit_pending;
