//! The background purge: rows that can no longer matter are deleted in small batches (see
//! [`shared::db::purge_in_batches`]), once a minute.
//!
//! | rows | deleted once |
//! |---|---|
//! | refresh tokens, then sessions | a day past the session's absolute expiry or its revocation (a live session keeps every spent token, so presenting one is always reuse) |
//! | revocations | past their expiry (every token they could match has expired, plus the largest leeway) |
//! | published outbox events | a day after publishing |
//! | writers' heartbeats | a day after the last |
//!
//! Each batch skips rows another transaction holds (`SKIP LOCKED`), so a purge never waits
//! on, or deadlocks with, a request. The audit log is never purged.

use chrono::Utc;

use crate::state::AppState;

/// How long dead rows are kept for a look before they go.
const GRACE: chrono::Duration = chrono::Duration::days(1);

/// (what, batch statement, how far back the cutoff is).
const PURGES: &[(&str, &str, chrono::Duration)] = &[
    (
        "refresh tokens of ended sessions",
        "DELETE FROM refresh_tokens WHERE id IN (SELECT t.id FROM refresh_tokens t \
         JOIN sessions s ON s.id = t.session_id \
         WHERE s.expires_at < $1 OR s.revoked_at < $1 LIMIT $2 FOR UPDATE OF t SKIP LOCKED)",
        GRACE,
    ),
    (
        "ended sessions",
        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
         WHERE (expires_at < $1 OR revoked_at < $1) \
         AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = sessions.id) \
         LIMIT $2 FOR UPDATE SKIP LOCKED)",
        GRACE,
    ),
    (
        "revocations",
        "DELETE FROM revocations WHERE id IN (SELECT id FROM revocations \
         WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        chrono::Duration::zero(),
    ),
    (
        "published events",
        "DELETE FROM outbox_events WHERE id IN (SELECT id FROM outbox_events \
         WHERE published_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        GRACE,
    ),
    (
        "writers' heartbeats",
        "DELETE FROM denylist_writers WHERE instance IN (SELECT instance FROM denylist_writers \
         WHERE heartbeat_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        GRACE,
    ),
];

/// One pass over every table; returns the rows deleted. A table that fails is logged and
/// the others are still purged.
pub async fn purge_once(state: &AppState) -> usize {
    let now = Utc::now();
    let mut total = 0;
    for (what, statement, back) in PURGES {
        match shared::db::purge_in_batches(&state.pool, statement, now - *back).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, what, "purged expired rows");
                total += deleted;
            }
            Err(err) => tracing::warn!(error = format!("{err:#}"), what, "purging failed"),
        }
    }
    total
}
