//! The background purge: rows that can no longer matter are deleted in small batches (see
//! [`shared::db::purge_in_batches`]), once a minute.
//!
//! | rows | deleted once |
//! |---|---|
//! | refresh tokens | a day past their expiry (a spent token older than that is unknown, no longer reuse) |
//! | sessions, with their tokens | a day past their absolute expiry or their revocation |
//! | revocations | past their expiry (every token they could match has expired, plus the largest leeway) |
//! | published outbox events | a day after publishing |
//!
//! The audit log is never purged.

use std::sync::Weak;
use std::time::Duration;

use chrono::Utc;

use crate::state::AppState;

/// How long dead rows are kept for a look before they go.
const GRACE: chrono::Duration = chrono::Duration::days(1);

/// (what, batch statement, how far back the cutoff is).
const PURGES: &[(&str, &str, chrono::Duration)] = &[
    (
        "refresh tokens",
        "DELETE FROM refresh_tokens WHERE id IN \
         (SELECT id FROM refresh_tokens WHERE expires_at < $1 LIMIT $2)",
        GRACE,
    ),
    (
        "expired sessions",
        "DELETE FROM sessions WHERE id IN \
         (SELECT id FROM sessions WHERE expires_at < $1 LIMIT $2)",
        GRACE,
    ),
    (
        "revoked sessions",
        "DELETE FROM sessions WHERE id IN \
         (SELECT id FROM sessions WHERE revoked_at < $1 LIMIT $2)",
        GRACE,
    ),
    (
        "revocations",
        "DELETE FROM revocations WHERE id IN \
         (SELECT id FROM revocations WHERE expires_at <= $1 LIMIT $2)",
        chrono::Duration::zero(),
    ),
    (
        "published events",
        "DELETE FROM outbox_events WHERE id IN \
         (SELECT id FROM outbox_events WHERE published_at < $1 LIMIT $2)",
        GRACE,
    ),
];

/// One pass over every table; returns the rows deleted.
pub async fn purge_once(state: &AppState) -> anyhow::Result<usize> {
    let now = Utc::now();
    let mut total = 0;
    for (what, statement, back) in PURGES {
        let deleted = shared::db::purge_in_batches(&state.pool, statement, now - *back)
            .await
            .map_err(|e| e.context(format!("purging {what}")))?;
        if deleted > 0 {
            tracing::info!(deleted, what, "purged expired rows");
        }
        total += deleted;
    }
    Ok(total)
}

/// Purge every `every` until the state is dropped.
pub fn spawn(state: Weak<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            if let Err(err) = purge_once(&state).await {
                tracing::warn!(error = format!("{err:#}"), "purging expired rows failed");
            }
        }
    })
}
