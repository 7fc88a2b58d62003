-- The head of the audit chain: the last row's hash, in one row that every append updates
-- in the same statement as its insert. The row lock serialises appends until the
-- appending transaction commits, and hands each append the hash it chains to, so an
-- append is one statement instead of lock, read and insert. `audit verify` also checks
-- that the last row's hash is the head's.
CREATE TABLE audit_head (
    id boolean PRIMARY KEY DEFAULT true CHECK (id),
    prev bytea,
    hash bytea
);

INSERT INTO audit_head (id, prev, hash)
SELECT true, NULL, (SELECT hash FROM audit_log WHERE hash IS NOT NULL ORDER BY id DESC LIMIT 1);

GRANT SELECT, UPDATE ON audit_head TO auth_service_app;
