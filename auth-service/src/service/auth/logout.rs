//! Logging out and sessions: listing and revoking them (logout, logout-all, one session),
//! and `jti` revocations.

use chrono::Utc;
use diesel_async::AsyncConnection;
use serde_json::json;
use shared::denylist::Revocation;
use uuid::Uuid;

use crate::crypto::tokens::hash_token;
use crate::domain::RequestMeta;
use crate::error::AuthError;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::revocations::{self};
use crate::store::sessions::{self, Revoke, SessionRow};
use crate::store::users::{self};

/// Revoke sessions (of `user_id`) with their durable denylist record and an audit row, in
/// one transaction; then publish. Returns the sessions revoked.
pub async fn revoke_sessions(
    state: &AppState,
    user_id: Uuid,
    which: SessionSelector,
    audit_event: &'static str,
    meta: &RequestMeta,
) -> Result<Vec<Uuid>, AuthError> {
    let now = Utc::now();
    let mut conn = shared::db::conn(&state.pool).await?;
    let (revoked, rows) = conn
        .transaction(async |conn| {
            let revoked = match which {
                SessionSelector::One(id) => {
                    sessions::revoke(conn, Revoke::These(&[id]), audit_event, now).await?
                }
                SessionSelector::AllExcept(keep) => {
                    // Logins in flight for this user open no session after this commits.
                    users::bump_epoch(conn, user_id).await?;
                    let all = Revoke::AllOf {
                        user_id,
                        except: keep,
                    };
                    sessions::revoke(conn, all, audit_event, now).await?
                }
                SessionSelector::Beyond(cap) => {
                    users::lock(conn, user_id).await?;
                    let idle = state.idle_ttl();
                    let over =
                        sessions::live_beyond(conn, user_id, now, idle, i64::from(cap)).await?;
                    sessions::revoke(conn, Revoke::These(&over), "session_limit", now).await?
                }
            };
            let revocations: Vec<Revocation> = revoked
                .iter()
                .map(|sid| Revocation::Session(sid.to_string()))
                .collect();
            let rows = state.revocations.record(conn, &revocations, now).await?;
            let session_id = match which {
                SessionSelector::One(id) => Some(id),
                SessionSelector::AllExcept(keep) => keep,
                SessionSelector::Beyond(_) => None,
            };
            let mut details = json!({ "sessions_revoked": revoked.len() });
            if let SessionSelector::Beyond(cap) = which {
                details["reason"] = json!("session_limit");
                details["max_sessions"] = json!(cap);
            }
            audit::record(
                conn,
                AuditEntry {
                    event: audit_event,
                    actor_id: Some(user_id),
                    subject_id: Some(user_id),
                    session_id,
                    meta,
                    details,
                },
            )
            .await?;
            Ok::<_, diesel::result::Error>((revoked, rows))
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    Ok(revoked)
}

#[derive(Debug, Clone, Copy)]
pub enum SessionSelector {
    One(Uuid),
    AllExcept(Option<Uuid>),
    /// The live sessions beyond the newest `n` (the per-user cap).
    Beyond(u32),
}

/// Whether an access token was revoked by its `jti` (`/oauth/revoke`).
pub async fn token_revoked(state: &AppState, jti: &str) -> Result<bool, AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    Ok(revocations::token_revoked(&mut conn, jti, Utc::now()).await?)
}

/// Whether an access token's session is still live and its `jti` not revoked, as
/// PostgreSQL (the source of truth) says now.
pub async fn access_token_is_live(
    state: &AppState,
    session_id: uuid::Uuid,
    user_id: uuid::Uuid,
    jti: &str,
) -> Result<bool, AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    Ok(sessions::token_is_live(&mut conn, session_id, user_id, jti, Utc::now()).await?)
}

/// Logout with a refresh token (body or cookie): revoke its session. Unknown or already
/// revoked tokens are fine: logging out twice is harmless.
pub async fn logout_with_refresh(
    state: &AppState,
    presented: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    if presented.is_empty() || presented.len() > 512 {
        return Ok(());
    }
    let hash = hash_token(presented);
    let mut conn = shared::db::conn(&state.pool).await?;
    let found = sessions::find_refresh(&mut conn, &hash).await?;
    drop(conn);
    if let Some((_, session)) = found {
        revoke_sessions(
            state,
            session.user_id,
            SessionSelector::One(session.id),
            event::LOGOUT,
            meta,
        )
        .await?;
    }
    Ok(())
}

/// One page of the caller's live sessions, newest first, and the cursor of the next.
pub async fn list_sessions(
    state: &AppState,
    user_id: Uuid,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Vec<SessionRow>, Option<String>), AuthError> {
    let before: Option<Uuid> = cursor
        .map(|c| shared::cursor::decode(c).ok_or_else(shared::cursor::invalid))
        .transpose()?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = sessions::list_live(
        &mut conn,
        user_id,
        Utc::now(),
        state.idle_ttl(),
        before,
        i64::from(limit) + 1,
    )
    .await?;
    Ok(shared::cursor::split_page(rows, limit as usize, |s| {
        shared::cursor::encode(&s.id)
    }))
}

/// Revoke one of the caller's sessions; someone else's (or an unknown id) is 404.
pub async fn delete_session(
    state: &AppState,
    user_id: Uuid,
    session_id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    let session = sessions::find(&mut conn, session_id).await?;
    drop(conn);
    match session {
        Some(s) if s.user_id == user_id => {
            revoke_sessions(
                state,
                user_id,
                SessionSelector::One(session_id),
                event::SESSION_REVOKED,
                meta,
            )
            .await?;
            Ok(())
        }
        _ => Err(AuthError::NotFound),
    }
}
