//! Refresh-token rotation with reuse detection.

use chrono::{DateTime, SubsecRound, Utc};
use diesel_async::AsyncConnection;
use serde_json::json;
use shared::denylist::Revocation;
use shared::ratelimit::Limit;
use uuid::Uuid;

use super::*;
use crate::crypto::tokens::{RefreshToken, hash_token};
use crate::domain::RequestMeta;
use crate::error::AuthError;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::revocations::RevocationRow;
use crate::store::sessions::{self, QuickRotation, Revoke};
use crate::store::users::UserRow;

enum RefreshOutcome {
    Rotated {
        user: UserRow,
        session_id: Uuid,
        refresh_expires: DateTime<Utc>,
        amr: String,
    },
    Reused(Vec<RevocationRow>),
    Invalid,
}

/// Spend a refresh token and issue its successor: in one statement when all is well
/// ([`sessions::rotate_quick`]), else in a transaction that looks closer. The session and
/// then the token row are locked either way, so of concurrent refreshes with one token
/// exactly one finds it unspent; the others see it spent, which is reuse: the whole
/// session is revoked (RFC 9700 4.14). Every change that must end a user's refreshes (a
/// password change, a demotion, disabling, deletion) revokes the sessions' rows in its
/// own transaction, so a refresh waiting on one finds its session revoked.
pub async fn refresh(
    state: &AppState,
    presented: &str,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<Issued, AuthError> {
    if presented.is_empty() || presented.len() > 512 {
        return Err(AuthError::RefreshInvalid);
    }
    let hash = hash_token(presented);
    let mut conn = shared::db::conn(&state.pool).await?;
    // Limited per ip and per session (one Redis round trip; unknown tokens count together).
    // The session is read here unlocked, and the token row read again under the lock below:
    // the limit must be known before the transaction, and no row lock may be held across a
    // Redis call.
    let known = sessions::find_refresh(&mut conn, &hash)
        .await?
        .map(|(_, s)| (s.id, s.user_id));
    let session_key = known.map_or_else(|| "unknown".to_owned(), |(id, _)| id.to_string());
    let a = &state.settings.auth;
    state
        .limiter
        .enforce(&[
            Limit::new("refresh-ip", a.rate_refresh_ip, meta.ip_key.as_str()),
            Limit::new("refresh-session", a.rate_refresh_session, session_key),
        ])
        .await?;
    // Microseconds, as stored: the expiry read back from the database is this plus the idle
    // lifetime exactly.
    let now = Utc::now().trunc_subsecs(6);
    let idle = state.idle_ttl();
    let successor = RefreshToken::generate();
    let successor_hash = hash_token(&successor.0);
    let successor_id = Uuid::now_v7();
    // The usual case in one statement; anything else (a spent token is reuse) is looked at
    // closer in a transaction below.
    let Some((session_id, user_id)) = known else {
        return Err(AuthError::RefreshInvalid);
    };
    let rotation = QuickRotation {
        session_id,
        presented_hash: &hash,
        successor_id,
        successor_hash: &successor_hash,
        at: now,
        idle,
    };
    let audit = AuditEntry {
        event: event::REFRESH,
        actor_id: Some(user_id),
        subject_id: Some(user_id),
        session_id: Some(session_id),
        meta,
        details: json!({}),
    };
    let rotated = |(user, refresh_expires, amr)| RefreshOutcome::Rotated {
        user,
        session_id,
        refresh_expires,
        amr,
    };
    let quick = sessions::rotate_quick(&mut conn, &rotation, &audit)
        .await?
        .map(rotated);
    let outcome = match quick {
        Some(rotated) => rotated,
        None => {
            conn.transaction(async |conn| {
                // Rows are locked in the order every transaction here takes them: the session,
                // then its token; a revocation or a deletion takes the session before the
                // tokens, so the two can never wait on each other.
                sessions::lock(conn, session_id).await?;
                let Some((token, session)) = sessions::find_refresh_for_update(conn, &hash).await?
                else {
                    return Ok::<_, diesel::result::Error>(RefreshOutcome::Invalid);
                };
                if token.used_at.is_some() {
                    let newly = !sessions::revoke(
                        conn,
                        Revoke::These(&[session.id]),
                        "refresh_token_reuse",
                        now,
                    )
                    .await?
                    .is_empty();
                    let rows = if newly {
                        state
                            .revocations
                            .record(conn, &[Revocation::Session(session.id.to_string())], now)
                            .await?
                    } else {
                        Vec::new()
                    };
                    audit::record(
                        conn,
                        AuditEntry {
                            event: event::REFRESH_REUSE_DETECTED,
                            actor_id: None,
                            subject_id: Some(session.user_id),
                            session_id: Some(session.id),
                            meta,
                            details: json!({ "token_id": token.id, "session_was_live": newly }),
                        },
                    )
                    .await?;
                    return Ok(RefreshOutcome::Reused(rows));
                }
                // Unspent: the one statement again, now under the locks; it writes only if
                // the session, the token and the user still allow it.
                Ok(sessions::rotate_quick(conn, &rotation, &audit)
                    .await?
                    .map_or(RefreshOutcome::Invalid, rotated))
            })
            .await?
        }
    };

    match outcome {
        RefreshOutcome::Invalid => Err(AuthError::RefreshInvalid),
        RefreshOutcome::Reused(rows) => {
            tracing::warn!("refresh token reuse detected; session revoked");
            state.revocations.publish(&mut conn, rows).await;
            Err(AuthError::RefreshReused)
        }
        RefreshOutcome::Rotated {
            user,
            session_id,
            refresh_expires,
            amr,
        } => Issued::for_session(
            state,
            &user,
            session_id,
            &amr,
            successor.0,
            (refresh_expires - now).num_seconds(),
            delivery,
        ),
    }
}
