//! Sealing the audit chain: every second, the rows appended since the last pass get their
//! HMAC seal (see `store::audit_chain`), and the highest sealed row is logged, so that the
//! log pipeline holds an anchor of the chain outside the database.

use std::sync::Weak;
use std::time::Duration;

use crate::state::AppState;
use crate::store::audit_chain;

/// Rows sealed per statement.
const BATCH: i64 = 1000;

/// Seal everything appended so far; returns the highest row sealed, if any.
pub async fn seal_once(state: &AppState) -> anyhow::Result<Option<i64>> {
    let key = state
        .settings
        .audit_hmac_key()
        .ok_or_else(|| anyhow::anyhow!("AUTH_AUDIT_HMAC_KEY is not set"))?;
    let mut conn = state.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut highest = None;
    while let Some(id) = audit_chain::seal_pending(&mut conn, &key, BATCH).await? {
        highest = Some(id);
    }
    Ok(highest)
}

/// Seal every `every` until the state is dropped.
pub fn spawn(state: Weak<AppState>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else { break };
            match seal_once(&state).await {
                Ok(Some(id)) => tracing::info!(audit_id = id, "audit log sealed up to row"),
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %err, "sealing the audit log failed"),
            }
        }
    })
}
