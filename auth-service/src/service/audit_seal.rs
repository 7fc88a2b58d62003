//! Sealing the audit chain (see `store::audit_chain`): every second, the rows appended since
//! the last pass get their HMAC seal, and the range sealed is logged with the last seal, so
//! that the log pipeline holds anchors of the chain outside the database.
//!
//! The service seals only rows written in the last ten minutes: a row older than that and
//! not sealed was written while no sealer ran, or by someone who could not seal it, and is
//! for an operator to look into (`audit verify` names it, `audit seal` seals it). While it
//! runs, the sealer also remembers the last row it sealed and refuses to go on if that row's
//! hash or seal changes beneath it: the chain was rewritten, and sealing the rewrite would
//! vouch for it.

use std::ops::ControlFlow;

use chrono::Utc;

use crate::state::AppState;
use crate::store::audit_chain::{self, SEAL_WITHIN, Sealed};

/// Rows sealed per statement.
const BATCH: i64 = 1000;

/// Batches of waiting events chained per pass at most (a pass runs every half second).
const CHAIN_PASS: usize = 20;

/// Why sealing stopped.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the audit chain changed below the last sealed row {0}: it was rewritten")]
    Rewritten(i64),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Chain the events waiting, then seal what was chained since the last seal: rows written
/// within the last ten minutes, or (`all`, or when nothing was ever sealed) every one. Returns the last row sealed and the first of this pass, if any.
pub async fn seal_once(state: &AppState, all: bool) -> anyhow::Result<Option<(i64, Sealed)>> {
    let key = state
        .settings
        .audit_hmac_key()
        .ok_or_else(|| anyhow::anyhow!("AUTH_AUDIT_HMAC_KEY is not set"))?;
    let mut conn = state.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    // What waits to be chained first: a command seals the events it just wrote.
    if let Err(err) = audit_chain::chain_all(&mut conn, CHAIN_PASS).await {
        tracing::warn!(error = %err, "chaining audit events before sealing failed");
    }
    let last_sealed = audit_chain::last_sealed(&mut conn).await?;
    // Nothing sealed yet (the first run with seals): the rows before are sealed as they are.
    let not_before = (!all && last_sealed.is_some()).then(|| Utc::now() - SEAL_WITHIN);
    let first = last_sealed.map_or(1, |s| s.id + 1);
    let mut last = None;
    while let Some(sealed) = audit_chain::seal_pending(&mut conn, &key, BATCH, not_before).await? {
        last = Some(sealed);
    }
    Ok(last.map(|l| (first, l)))
}

/// One pass of the loop: check the mark, seal, move the mark.
async fn pass(state: &AppState, mark: &mut Option<Sealed>) -> Result<(), SealError> {
    let mut conn = state.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let now_last = audit_chain::last_sealed(&mut conn)
        .await
        .map_err(anyhow::Error::from)?;
    drop(conn);
    if let Some(mark) = mark.as_ref() {
        let intact = now_last.as_ref().is_some_and(|last| last.id >= mark.id)
            && still_sealed(state, mark).await?;
        if !intact {
            return Err(SealError::Rewritten(mark.id));
        }
    } else {
        *mark = now_last;
    }
    if let Some((from, last)) = seal_once(state, false).await? {
        tracing::info!(
            from,
            to = last.id,
            seal = %hex(&last.mac),
            "audit log sealed"
        );
        *mark = Some(last);
    }
    Ok(())
}

/// Whether the marked row still has the hash and seal it had.
async fn still_sealed(state: &AppState, mark: &Sealed) -> anyhow::Result<bool> {
    let mut conn = state.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(audit_chain::sealed(&mut conn, mark.id).await?.as_ref() == Some(mark))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One run of the background chainer: every event waiting now.
pub async fn chain_logged(state: &AppState) {
    let chained = match state.pool.get().await {
        Ok(mut conn) => audit_chain::chain_all(&mut conn, CHAIN_PASS)
            .await
            .map_err(anyhow::Error::from),
        Err(err) => Err(anyhow::anyhow!("{err}")),
    };
    if let Err(err) = chained {
        tracing::warn!(error = %err, "chaining audit events failed");
    }
}

/// One run of the background job, with the mark it keeps between runs; breaks when the
/// chain is found rewritten (sealing stops for good).
pub async fn seal_logged(state: &AppState, mark: &mut Option<Sealed>) -> ControlFlow<()> {
    match pass(state, mark).await {
        Ok(()) => {}
        Err(SealError::Rewritten(id)) => {
            metrics::counter!("audit_chain_rewritten_total").increment(1);
            tracing::error!(
                audit_id = id,
                "the audit chain changed below the last sealed row; sealing stops \
                 (run `auth-service audit verify`)"
            );
            return ControlFlow::Break(());
        }
        Err(SealError::Other(err)) => {
            tracing::warn!(error = %err, "sealing the audit log failed");
        }
    }
    ControlFlow::Continue(())
}
