//! The caller's own account: profile and password.

use chrono::Utc;
use diesel_async::AsyncConnection;
use serde_json::json;
use shared::denylist::Revocation;
use uuid::Uuid;

use crate::crypto::hashing::Verified;
use crate::domain::RequestMeta;
use crate::domain::{DisplayName, NewPassword, PasswordInput};
use crate::error::AuthError;
use crate::service::throttle;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::mail::{self, MailKind};
use crate::store::sessions;
use crate::store::users::{self, UserRow};

pub async fn me(state: &AppState, user_id: Uuid) -> Result<UserRow, AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    users::find(&mut conn, user_id)
        .await?
        .ok_or(AuthError::NotFound)
}

/// Set or clear (`None`) the display name.
pub async fn update_display_name(
    state: &AppState,
    user_id: Uuid,
    display_name: Option<String>,
    meta: &RequestMeta,
) -> Result<UserRow, AuthError> {
    let name = display_name
        .as_deref()
        .map(DisplayName::parse)
        .transpose()?
        .map(DisplayName::into_inner);
    let mut conn = shared::db::conn(&state.pool).await?;
    conn.transaction(async |conn| {
        let user = users::set_display_name(conn, user_id, name.as_deref())
            .await?
            .ok_or(AuthError::NotFound)?;
        audit::record(
            conn,
            AuditEntry {
                event: event::PROFILE_UPDATED,
                actor_id: Some(user_id),
                subject_id: Some(user_id),
                session_id: None,
                meta,
                details: json!({ "fields": ["display_name"] }),
            },
        )
        .await?;
        Ok(user)
    })
    .await
}

/// Change the password after checking the current one, and revoke every other session
/// (the caller's current session stays).
pub async fn change_password(
    state: &AppState,
    user_id: Uuid,
    current_session: Option<Uuid>,
    current_password: String,
    new_password: String,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let rate = state.settings.auth.rate_password_change;
    throttle::enforce(state, "password-change", rate, &user_id.to_string()).await?;
    let mut errors = Vec::new();
    let current = PasswordInput::parse("current_password", current_password)
        .map_err(|e| errors.push(e))
        .ok();
    let mut conn = shared::db::conn(&state.pool).await?;
    let user = users::find(&mut conn, user_id)
        .await?
        .ok_or(AuthError::NotFound)?;
    let mut inputs = vec![user.email.as_str()];
    if let Some(name) = &user.display_name {
        inputs.push(name);
    }
    let new = NewPassword::parse("new_password", new_password, &inputs)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(current), Some(new)) = (current, new) else {
        return Err(AuthError::Validation(errors));
    };
    // No connection is held while hashing (see `auth::login`).
    drop(conn);
    let verified = state
        .hashing
        .verify(current.into_inner(), Some(user.password_hash.clone()))
        .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    if verified == Verified::No {
        audit::record(
            &mut conn,
            AuditEntry {
                event: event::PASSWORD_CHANGE_FAILED,
                actor_id: Some(user_id),
                subject_id: Some(user_id),
                session_id: current_session,
                meta,
                details: json!({ "reason": "wrong_current_password" }),
            },
        )
        .await?;
        return Err(AuthError::InvalidCredentials);
    }
    drop(conn);
    let hash = state.hashing.hash(new.into_inner()).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = conn
        .transaction(async |conn| {
            apply_new_password(
                state,
                conn,
                NewPasswordApplied {
                    user_id,
                    email: &user.email,
                    hash: &hash,
                    keep_session: current_session,
                    how: "changed",
                    event: event::PASSWORD_CHANGED,
                    meta,
                },
            )
            .await
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    throttle::forget_known_ips(state, &user.email.trim().to_lowercase()).await;
    Ok(())
}

/// A password set by its owner (a change, or a reset by mail).
pub(crate) struct NewPasswordApplied<'a> {
    pub user_id: Uuid,
    /// Where the notice goes.
    pub email: &'a str,
    pub hash: &'a str,
    /// The session that stays (the caller's, on a change); `None` ends every session.
    pub keep_session: Option<Uuid>,
    /// `changed` or `reset`, for the notice.
    pub how: &'static str,
    pub event: &'static str,
    pub meta: &'a RequestMeta,
}

/// In the caller's transaction: set the hash (which moves the epoch and spends every reset
/// link), revoke the sessions, audit it and queue the notice mail. Returns the revocations to
/// publish once committed.
pub(crate) async fn apply_new_password(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    p: NewPasswordApplied<'_>,
) -> Result<Vec<crate::store::revocations::RevocationRow>, diesel::result::Error> {
    let now = Utc::now();
    users::set_password_hash(conn, p.user_id, p.hash).await?;
    // Whoever was guessing second-factor codes had the old password.
    crate::store::mfa::forget_wrong_codes(conn, p.user_id).await?;
    let (revoked, rows) = end_sessions(
        state,
        conn,
        p.user_id,
        p.keep_session,
        "password_changed",
        now,
    )
    .await?;
    audit::record(
        conn,
        AuditEntry {
            event: p.event,
            actor_id: Some(p.user_id),
            subject_id: Some(p.user_id),
            session_id: p.keep_session,
            meta: p.meta,
            details: json!({ "sessions_revoked": revoked.len() }),
        },
    )
    .await?;
    mail::enqueue(
        conn,
        MailKind::PasswordChanged,
        p.user_id,
        p.email,
        &json!({ "how": p.how, "at": now.format("%Y-%m-%d %H:%M").to_string() }),
        None,
    )
    .await?;
    Ok(rows)
}

/// In the caller's transaction: revoke every live session of a user but `keep`, and record
/// the revocations (their access tokens are refused once published). Returns the sessions
/// revoked and the revocations to publish after the commit.
pub(crate) async fn end_sessions(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: &str,
    now: chrono::DateTime<Utc>,
) -> Result<(Vec<Uuid>, Vec<crate::store::revocations::RevocationRow>), diesel::result::Error> {
    let revoked = sessions::revoke(
        conn,
        sessions::Revoke::AllOf {
            user_id,
            except: keep,
        },
        reason,
        now,
    )
    .await?;
    let revocations: Vec<Revocation> = revoked
        .iter()
        .map(|sid| Revocation::Session(sid.to_string()))
        .collect();
    let rows = state.revocations.record(conn, &revocations, now).await?;
    Ok((revoked, rows))
}

/// Check the caller's current password before a sensitive change (`purpose`): counted as a
/// login attempt (its rate limits and brute-force locks apply, a wrong one counts as a
/// failure and is audited), so that a stolen access token cannot guess passwords here
/// faster than at login.
pub(crate) async fn check_current_password(
    state: &AppState,
    user: &UserRow,
    password: PasswordInput,
    purpose: &'static str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let account = user.email.trim().to_lowercase();
    throttle::check_login(state, &account, &meta.ip_key).await?;
    let verified = state
        .hashing
        .verify(password.into_inner(), Some(user.password_hash.clone()))
        .await?;
    if matches!(verified, Verified::Yes { .. }) {
        return Ok(());
    }
    let mut conn = shared::db::conn(&state.pool).await?;
    audit::record(
        &mut conn,
        AuditEntry {
            event: event::REAUTH_FAILED,
            actor_id: Some(user.id),
            subject_id: Some(user.id),
            session_id: None,
            meta,
            details: json!({ "for": purpose }),
        },
    )
    .await?;
    throttle::record_failure(state, throttle::Subject::Account(&account), &meta.ip_key).await;
    Err(AuthError::InvalidCredentials)
}
