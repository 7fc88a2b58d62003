//! Proving an email address, changing it, and resetting a forgotten password by mail.
//!
//! The links' tokens are made when the mail is sent (`service::mail`); here they are spent.
//! Each is single use: the statement that spends it is conditional, so of concurrent
//! attempts exactly one succeeds.

use diesel_async::AsyncConnection;
use serde_json::json;
use shared::problem::FieldCode;
use shared::ratelimit::Limit;
use uuid::Uuid;

use crate::crypto::tokens::hash_token;
use crate::domain::{Email, NewPassword, PasswordInput, RequestMeta};
use crate::error::AuthError;
use crate::service::throttle;
use crate::service::users::{NewPasswordApplied, apply_new_password};
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::mail::{self, MailKind, Purpose};
use crate::store::unique_violation;
use crate::store::users;

/// The longest token a link carries (ours are 43 characters); anything longer is not one.
const MAX_TOKEN_LEN: usize = 128;

fn token_hash(token: &str) -> Option<Vec<u8>> {
    let token = token.trim();
    (!token.is_empty() && token.len() <= MAX_TOKEN_LEN).then(|| hash_token(token))
}

/// Ask for a reset link. Whether or not an account has the address, the same work is done
/// (rate limits, then one insert) and the caller gets the same answer; the mail worker
/// sends a link only when it does.
pub async fn request_password_reset(
    state: &AppState,
    email: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let email = Email::parse(email)?;
    let account = email.normalized();
    let a = &state.settings.auth;
    let subject = throttle::Subject::Account(&account);
    // Per address, so nobody can flood a mailbox; an ip the account logged in from keeps a
    // budget of its own, so nobody elsewhere can use the budget up against its owner.
    state
        .limiter
        .enforce(&[
            Limit::new("reset-ip", a.rate_reset_ip, &meta.ip_key),
            Limit::new(
                "reset-account",
                a.rate_reset_account,
                throttle::subject_key(subject),
            )
            .own_budget_if_known(
                throttle::known_ips_key(state, &account),
                meta.ip_key.clone(),
            ),
        ])
        .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    mail::enqueue_reset_request(&mut conn, &account).await?;
    Ok(())
}

/// Set a new password with a reset link: every session and every other reset link of the
/// account ends, the address counts as verified (the link reached it), and a notice is
/// mailed.
pub async fn confirm_password_reset(
    state: &AppState,
    token: &str,
    new_password: String,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let a = &state.settings.auth;
    throttle::enforce(
        state,
        "reset-confirm-ip",
        a.rate_reset_confirm_ip,
        &meta.ip_key,
    )
    .await?;
    let hash = token_hash(token).ok_or(AuthError::ResetTokenInvalid)?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let (user_id, _, _) = mail::find_usable(&mut conn, &hash, &[Purpose::PasswordReset])
        .await?
        .ok_or(AuthError::ResetTokenInvalid)?;
    let user = users::find(&mut conn, user_id)
        .await?
        .ok_or(AuthError::ResetTokenInvalid)?;
    let mut inputs = vec![user.email.as_str()];
    if let Some(name) = &user.display_name {
        inputs.push(name);
    }
    // A password the rules refuse does not spend the link.
    let new = NewPassword::parse("new_password", new_password, &inputs)?;
    drop(conn);
    throttle::enforce(
        state,
        "password-change",
        a.rate_password_change,
        &user_id.to_string(),
    )
    .await?;
    let new_hash = state.hashing.hash(new.into_inner()).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let (rows, email) = conn
        .transaction(async |conn| {
            // The user's row first, as every transaction that changes a user takes it;
            // then the link, spent only if it is still good for the account as it is now
            // (same address, same epoch, enabled): a password change, logout everywhere,
            // email change or disabling that committed meanwhile leaves nothing to spend.
            users::lock(conn, user_id).await?;
            let user = users::find(conn, user_id)
                .await?
                .ok_or(AuthError::ResetTokenInvalid)?;
            let Some((_, sent_to, epoch)) =
                mail::spend(conn, &hash, Purpose::PasswordReset).await?
            else {
                return Err(AuthError::ResetTokenInvalid);
            };
            if user.disabled
                || epoch != Some(user.auth_epoch)
                || !user.email.eq_ignore_ascii_case(&sent_to)
            {
                return Err(AuthError::ResetTokenInvalid);
            }
            let rows = apply_new_password(
                state,
                conn,
                NewPasswordApplied {
                    user_id,
                    email: &user.email,
                    hash: &new_hash,
                    keep_session: None,
                    how: "reset",
                    event: event::PASSWORD_RESET,
                    meta,
                },
            )
            .await?;
            mail::mark_verified(conn, user_id, &sent_to).await?;
            Ok::<_, AuthError>((rows, user.email))
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    throttle::forget_known_ips(state, &email.trim().to_lowercase()).await;
    Ok(())
}

/// Follow a verification link: the account's address is verified, or, for a link to a new
/// address, the account's address becomes that one (verified).
pub async fn verify_email(
    state: &AppState,
    token: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let a = &state.settings.auth;
    throttle::enforce(state, "verify-ip", a.rate_verify_ip, &meta.ip_key).await?;
    let hash = token_hash(token).ok_or(AuthError::VerifyTokenInvalid)?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let purposes = [Purpose::VerifyEmail, Purpose::EmailChange];
    let (user_id, _, _) = mail::find_usable(&mut conn, &hash, &purposes)
        .await?
        .ok_or(AuthError::VerifyTokenInvalid)?;
    let result = conn
        .transaction(async |conn| {
            // The user's row first (the one lock order), then the link.
            users::lock(conn, user_id).await?;
            let user = users::find(conn, user_id)
                .await?
                .filter(|u| !u.disabled)
                .ok_or(AuthError::VerifyTokenInvalid)?;
            if let Some((_, email, _)) = mail::spend(conn, &hash, Purpose::VerifyEmail).await? {
                // A link to an address the account no longer has proves nothing.
                if !mail::mark_verified(conn, user_id, &email).await? {
                    return Err(AuthError::VerifyTokenInvalid);
                }
                // The other links (a resend's) have nothing left to prove.
                mail::spend_outstanding(conn, user_id, Purpose::VerifyEmail).await?;
                audit::record(
                    conn,
                    AuditEntry {
                        event: event::EMAIL_VERIFIED,
                        actor_id: Some(user_id),
                        subject_id: Some(user_id),
                        session_id: None,
                        meta,
                        details: json!({}),
                    },
                )
                .await?;
                return Ok(());
            }
            let Some((_, new_email, epoch)) =
                mail::spend(conn, &hash, Purpose::EmailChange).await?
            else {
                return Err(AuthError::VerifyTokenInvalid);
            };
            // Asked for under another epoch: a password change, reset, logout everywhere or
            // factor change since then ends it (the owner taking the account back).
            if epoch != Some(user.auth_epoch) {
                return Err(AuthError::VerifyTokenInvalid);
            }
            users::set_verified_email(conn, user_id, &new_email).await?;
            // Links to the old address are for an address the account no longer has.
            mail::spend_outstanding(conn, user_id, Purpose::VerifyEmail).await?;
            mail::spend_outstanding(conn, user_id, Purpose::PasswordReset).await?;
            mail::spend_outstanding(conn, user_id, Purpose::EmailChange).await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::EMAIL_CHANGED,
                    actor_id: Some(user_id),
                    subject_id: Some(user_id),
                    session_id: None,
                    meta,
                    details: json!({ "from": user.email, "to": new_email }),
                },
            )
            .await?;
            Ok(())
        })
        .await;
    match result {
        Err(AuthError::Database(err)) if unique_violation(&err) == Some("users_email_key") => {
            Err(AuthError::EmailTaken)
        }
        other => other,
    }
}

/// Mail the account's address a new verification link.
pub async fn resend_verification(state: &AppState, user_id: Uuid) -> Result<(), AuthError> {
    let a = &state.settings.auth;
    throttle::enforce(
        state,
        "verify-resend",
        a.rate_verify_resend,
        &user_id.to_string(),
    )
    .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let user = users::find(&mut conn, user_id)
        .await?
        .ok_or(AuthError::NotFound)?;
    if user.email_verified_at.is_some() {
        return Err(AuthError::Conflict(
            "The email address is verified already.".into(),
        ));
    }
    mail::enqueue(
        &mut conn,
        MailKind::VerifyEmail,
        user_id,
        &user.email,
        &json!({}),
        None,
    )
    .await?;
    Ok(())
}

/// Ask to change the account's address: the new address gets a link, and the change
/// applies when it is followed; the current address is told at once.
pub async fn change_email(
    state: &AppState,
    user_id: Uuid,
    session_id: Option<Uuid>,
    new_email: &str,
    current_password: String,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let a = &state.settings.auth;
    throttle::enforce(
        state,
        "email-change",
        a.rate_email_change,
        &user_id.to_string(),
    )
    .await?;
    let mut errors = Vec::new();
    let email = Email::parse(new_email)
        .map_err(|mut e| {
            e.field = "new_email".into();
            errors.push(e)
        })
        .ok();
    let password = PasswordInput::parse("current_password", current_password)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(email), Some(password)) = (email, password) else {
        return Err(AuthError::Validation(errors));
    };
    let mut conn = shared::db::conn(&state.pool).await?;
    let user = users::find(&mut conn, user_id)
        .await?
        .ok_or(AuthError::NotFound)?;
    if user.email.eq_ignore_ascii_case(email.as_str()) {
        return Err(AuthError::Validation(vec![shared::FieldError::new(
            "new_email",
            FieldCode::InvalidValue,
            "is the account's address already",
        )]));
    }
    drop(conn);
    // The password first: without it, nothing is said about the new address.
    crate::service::users::check_current_password(state, &user, password, "email_change", meta)
        .await?;
    // Per recipient too: no one mails an address more often than a reset could.
    let recipient = email.normalized();
    throttle::enforce(
        state,
        "mail-recipient",
        a.rate_reset_account,
        &throttle::subject_key(throttle::Subject::Account(&recipient)),
    )
    .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    if users::find_by_email(&mut conn, &recipient).await?.is_some() {
        return Err(AuthError::EmailTaken);
    }
    let now = chrono::Utc::now();
    conn.transaction(async |conn| {
        mail::enqueue(
            conn,
            MailKind::EmailChange,
            user_id,
            email.as_str(),
            &json!({ "new_email": email.as_str() }),
            Some(user.auth_epoch),
        )
        .await?;
        mail::enqueue(
            conn,
            MailKind::EmailChangeNotice,
            user_id,
            &user.email,
            &json!({
                "new_email": email.as_str(),
                "at": now.format("%Y-%m-%d %H:%M").to_string(),
            }),
            None,
        )
        .await?;
        audit::record(
            conn,
            AuditEntry {
                event: event::EMAIL_CHANGE_REQUESTED,
                actor_id: Some(user_id),
                subject_id: Some(user_id),
                session_id,
                meta,
                details: json!({}),
            },
        )
        .await?;
        Ok::<_, AuthError>(())
    })
    .await
}
