//! The background purge: rows that can no longer matter are deleted in small batches (see
//! [`shared::db::purge_in_batches`] and [`shared::db::purge_walk`]), every `AUTH_PURGE_INTERVAL_SECS` (a minute; 0: never
//! in the background, for a deployment that runs `auth-service purge` on a schedule).
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

/// How a table's batches find their rows.
enum Batches {
    /// Each batch from the start: [`shared::db::purge_in_batches`].
    FromStart(&'static str),
    /// Each batch after the last one's key: [`shared::db::purge_walk`].
    Walk(&'static str),
}

/// (what, batch statement, how far back the cutoff is).
const PURGES: &[(&str, Batches, chrono::Duration)] = &[
    // Both walk the ended sessions in the order they ended (`sessions_ended_idx`), so a
    // batch never reads again the sessions that earlier ones emptied or deleted. A session
    // with more tokens than one batch holds is taken up again at its own key (`>=`).
    (
        "refresh tokens of ended sessions",
        Batches::Walk(
            "WITH doomed AS (SELECT t.id, LEAST(s.expires_at, s.revoked_at) AS ended_at, \
             s.id AS session_id FROM sessions s JOIN refresh_tokens t ON t.session_id = s.id \
             WHERE LEAST(s.expires_at, s.revoked_at) < $1 \
             AND (LEAST(s.expires_at, s.revoked_at), s.id) >= ($3, $4) \
             ORDER BY LEAST(s.expires_at, s.revoked_at), s.id \
             LIMIT $2 FOR UPDATE OF t SKIP LOCKED), \
             gone AS (DELETE FROM refresh_tokens WHERE id IN (SELECT id FROM doomed) RETURNING 1) \
             SELECT (SELECT count(*) FROM gone) AS deleted, \
             (SELECT ended_at FROM doomed ORDER BY ended_at DESC, session_id DESC LIMIT 1) AS last_at, \
             (SELECT session_id FROM doomed ORDER BY ended_at DESC, session_id DESC LIMIT 1) AS last_id",
        ),
        GRACE,
    ),
    (
        "ended sessions",
        Batches::Walk(
            "WITH gone AS (DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
             WHERE LEAST(expires_at, revoked_at) < $1 \
             AND (LEAST(expires_at, revoked_at), id) >= ($3, $4) \
             AND NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.session_id = sessions.id) \
             ORDER BY LEAST(expires_at, revoked_at), id LIMIT $2 FOR UPDATE SKIP LOCKED) \
             RETURNING LEAST(expires_at, revoked_at) AS ended_at, id) \
             SELECT (SELECT count(*) FROM gone) AS deleted, \
             (SELECT ended_at FROM gone ORDER BY ended_at DESC, id DESC LIMIT 1) AS last_at, \
             (SELECT id FROM gone ORDER BY ended_at DESC, id DESC LIMIT 1) AS last_id",
        ),
        GRACE,
    ),
    (
        "revocations",
        Batches::FromStart(
            "DELETE FROM revocations WHERE id IN (SELECT id FROM revocations \
             WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        chrono::Duration::zero(),
    ),
    (
        "published events",
        Batches::FromStart(
            "DELETE FROM outbox_events WHERE id IN (SELECT id FROM outbox_events \
             WHERE published_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        GRACE,
    ),
    (
        "writers' heartbeats",
        Batches::FromStart(
            "DELETE FROM denylist_writers WHERE instance IN (SELECT instance FROM denylist_writers \
             WHERE heartbeat_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        GRACE,
    ),
    (
        "mail sent, skipped or given up",
        Batches::FromStart(
            "DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox \
             WHERE status <> 'pending' AND created_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        MAIL_KEPT,
    ),
    (
        "expired email tokens",
        Batches::FromStart(
            "DELETE FROM email_tokens WHERE token_hash IN (SELECT token_hash FROM email_tokens \
             WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        GRACE,
    ),
    (
        "expired passkey ceremonies",
        Batches::FromStart(
            "DELETE FROM webauthn_challenges WHERE id IN (SELECT id FROM webauthn_challenges \
             WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        GRACE,
    ),
    (
        "expired login challenges",
        Batches::FromStart(
            "DELETE FROM mfa_challenges WHERE token_hash IN (SELECT token_hash FROM mfa_challenges \
             WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        ),
        GRACE,
    ),
];

/// How long a mail's row stays after it was sent (or skipped, or given up): a week, to
/// answer "did my mail go out?" (it holds no token; see `store::mail`).
const MAIL_KEPT: chrono::Duration = chrono::Duration::days(7);

/// One table's part of a pass: what it holds, and what the purge did there.
#[derive(Debug, Clone)]
pub struct TablePurge {
    pub what: &'static str,
    pub purged: Result<shared::db::Purged, String>,
}

/// One pass over every table, in order (refresh tokens before the sessions they belong
/// to). A table that fails is logged and the others are still purged.
pub async fn purge_tables(state: &AppState) -> Vec<TablePurge> {
    let now = Utc::now();
    let mut report = Vec::with_capacity(PURGES.len());
    for (what, statement, back) in PURGES {
        let purged = match statement {
            Batches::FromStart(sql) => {
                shared::db::purge_in_batches(&state.pool, sql, now - *back).await
            }
            Batches::Walk(sql) => shared::db::purge_walk(&state.pool, sql, now - *back).await,
        };
        match &purged {
            Ok(p) if p.rows == 0 => {}
            Ok(p) => tracing::info!(
                deleted = p.rows,
                batches = p.batches,
                longest_batch_ms = p.longest_batch.as_millis() as u64,
                what,
                "purged expired rows"
            ),
            Err(err) => tracing::warn!(error = format!("{err:#}"), what, "purging failed"),
        }
        report.push(TablePurge {
            what,
            purged: purged.map_err(|err| format!("{err:#}")),
        });
    }
    report
}

/// One pass over every table; returns the rows deleted.
pub async fn purge_once(state: &AppState) -> usize {
    purge_tables(state)
        .await
        .iter()
        .filter_map(|t| t.purged.as_ref().ok())
        .map(|p| p.rows)
        .sum()
}
