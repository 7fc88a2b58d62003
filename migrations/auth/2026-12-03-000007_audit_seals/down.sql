DROP TABLE audit_seals;
DROP FUNCTION audit_seals_append_only();
