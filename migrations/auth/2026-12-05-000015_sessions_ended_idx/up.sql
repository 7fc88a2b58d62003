-- The purge walks ended sessions in the order they ended, with a cursor: each batch starts
-- where the last one stopped, so no batch reads the sessions an earlier batch emptied (with
-- the two indexes this replaces, every batch read them again, and a backlog's later
-- batches cost more and more). A session has ended at the earlier of its absolute expiry
-- and its revocation; LEAST ignores a null, so this is `expires_at` for a live session.
CREATE INDEX sessions_ended_idx ON sessions (LEAST(expires_at, revoked_at), id);
DROP INDEX sessions_expires_idx;
DROP INDEX sessions_revoked_idx;
