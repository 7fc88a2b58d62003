DROP INDEX outbox_events_published_idx;
DROP INDEX sessions_revoked_idx;
DROP INDEX sessions_expires_idx;
