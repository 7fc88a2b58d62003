//! Logging in: the password checked, then a session opened only if the account is still
//! as it was when checked.

use chrono::Utc;
use diesel_async::AsyncConnection;
use serde_json::json;
use shared::problem::FieldCode;
use uuid::Uuid;

use super::*;
use crate::crypto::hashing::Verified;
use crate::crypto::tokens::{RefreshToken, hash_token};
use crate::domain::RequestMeta;
use crate::domain::{Email, PasswordInput};
use crate::error::AuthError;
use crate::service::throttle;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::sessions::{self, NewRefresh, NewSession};
use crate::store::users::{self, UserRow};

/// What a login with the right password gets: tokens, or, with a second factor enrolled, a
/// challenge that `POST /v1/auth/mfa` completes.
pub enum LoginOutcome {
    Tokens(Issued),
    MfaRequired {
        mfa_token: String,
        /// What completes it: `totp`, `passkey`, `recovery_code`.
        methods: Vec<String>,
    },
}

pub async fn login(
    state: &AppState,
    email: String,
    password: String,
    delivery: Delivery,
    meta: &RequestMeta,
) -> Result<LoginOutcome, AuthError> {
    let password = PasswordInput::parse("password", password)?.into_inner();
    if email.trim().is_empty() {
        return Err(AuthError::Validation(vec![shared::FieldError::new(
            "email",
            FieldCode::Required,
            "is required",
        )]));
    }
    let account = email.trim().to_lowercase();
    let subject = throttle::Subject::Account(&account);
    // Rate limits and brute-force throttling, before any hashing or database work: a
    // refused attempt costs no CPU, and answers alike for every account.
    if let Err(limited) = throttle::check_login(state, &account, &meta.ip_key).await {
        if !throttle::audit_refusal(state, subject, &meta.ip_key).await {
            return Err(limited.into());
        }
        let mut conn = shared::db::conn(&state.pool).await?;
        audit::login_failed(&mut conn, None, meta, throttle::throttled_details()).await?;
        return Err(limited.into());
    }
    // No database connection is held while the password is hashed: a login flood waits in
    // the hashing queue (or is refused at once when it is full), not in the connection
    // pool that every other route needs.
    let mut conn = shared::db::conn(&state.pool).await?;
    // A malformed address is just an unknown account: same work, same answer.
    let user = match Email::parse(&email) {
        Ok(email) => users::find_by_email(&mut conn, &email.normalized()).await?,
        Err(_) => None,
    };
    drop(conn);
    let verified = state
        .hashing
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let (user, rehash) = match (user, verified) {
        (Some(user), Verified::Yes { rehash }) if !user.disabled => (user, rehash),
        (user, verified) => {
            let reason = match (&user, verified) {
                (None, _) => "unknown_account",
                (Some(u), Verified::Yes { .. }) if u.disabled => "disabled",
                (Some(u), _) if u.disabled => "disabled",
                _ => "wrong_password",
            };
            audit::login_failed(
                &mut conn,
                user.as_ref().map(|u| u.id),
                meta,
                json!({ "reason": reason }),
            )
            .await?;
            throttle::record_failure(state, subject, &meta.ip_key).await;
            return Err(AuthError::InvalidCredentials);
        }
    };

    if state.settings.auth.require_verified_email && user.email_verified_at.is_none() {
        // Only after the password was checked: this says nothing to someone without it.
        return Err(AuthError::EmailNotVerified);
    }

    if user.mfa_enabled {
        // The password was right; tokens only once the second factor is given. The
        // challenge remembers what the password check saw: a change meanwhile voids it.
        if let Some(new_hash) = &rehash {
            users::replace_password_hash(&mut conn, user.id, &user.password_hash, new_hash).await?;
        }
        let mfa_token =
            crate::service::mfa::open_challenge(&mut conn, &user, delivery, meta).await?;
        let (app, keys) = crate::store::passkeys::factors(&mut conn, user.id).await?;
        let methods = crate::service::passkeys::methods(app, keys);
        return Ok(LoginOutcome::MfaRequired { mfa_token, methods });
    }
    drop(conn);
    open_session(state, &user, rehash, delivery, "pwd", meta)
        .await
        .map(LoginOutcome::Tokens)
}

/// Open a session for a user whose credentials were checked against `user` (the row as it
/// was read then), with its first refresh token and the login's audit event; `rehash`
/// replaces the password hash in the same transaction. Refused (401) when the user row
/// changed since (another epoch, role, or disabled).
pub(crate) async fn open_session(
    state: &AppState,
    user: &UserRow,
    rehash: Option<String>,
    delivery: Delivery,
    amr: &str,
    meta: &RequestMeta,
) -> Result<Issued, AuthError> {
    let account = user.email.trim().to_lowercase();
    let subject = throttle::Subject::Account(&account);
    let mut conn = shared::db::conn(&state.pool).await?;
    let now = Utc::now();
    let session_id = Uuid::now_v7();
    let refresh = RefreshToken::generate();
    let refresh_hash = hash_token(&refresh.0);
    let session_expires = now + state.absolute_ttl();
    let refresh_expires = (now + state.idle_ttl()).min(session_expires);
    let session = NewSession {
        id: session_id,
        user_id: user.id,
        created_at: now,
        last_used_at: now,
        expires_at: session_expires,
        user_agent: meta.user_agent.as_deref(),
        ip: Some(&meta.ip),
        refresh_delivery: delivery.as_str(),
        amr,
    };
    let first_refresh = NewRefresh {
        id: Uuid::now_v7(),
        session_id,
        parent_id: None,
        token_hash: &refresh_hash,
        issued_at: now,
        expires_at: refresh_expires,
    };
    let entry = AuditEntry {
        event: event::LOGIN_SUCCEEDED,
        actor_id: Some(user.id),
        subject_id: Some(user.id),
        session_id: Some(session_id),
        meta,
        details: json!({
            "refresh_delivery": delivery.as_str(),
            "rehashed": rehash.is_some(),
            "amr": amr,
        }),
    };
    // The session, its first refresh token and the audit row are one statement, written only
    // if the user row still has the epoch, role and enabled state verified above (a password
    // change, demotion, disabling or logout-all that committed meanwhile moved the epoch); a
    // rehash (rare: the parameters changed) joins them in a transaction.
    let verified = sessions::Verified {
        auth_epoch: user.auth_epoch,
        role: &user.role,
    };
    let opened = match &rehash {
        None => sessions::open(&mut conn, &verified, &session, &first_refresh, &entry).await?,
        Some(new_hash) => {
            conn.transaction(async |conn| {
                users::replace_password_hash(conn, user.id, &user.password_hash, new_hash).await?;
                sessions::open(conn, &verified, &session, &first_refresh, &entry).await
            })
            .await?
        }
    };
    if !opened {
        // What the password was checked against changed while it was checked.
        audit::login_failed(
            &mut conn,
            Some(user.id),
            meta,
            json!({ "reason": "account_changed" }),
        )
        .await?;
        return Err(AuthError::InvalidCredentials);
    }
    throttle::record_success(state, subject, &meta.ip_key).await;

    // At most `max_sessions_per_user` live sessions: the oldest beyond go (rarely any).
    let cap = state.settings.auth.max_sessions_per_user;
    let over =
        sessions::live_beyond(&mut conn, user.id, now, state.idle_ttl(), i64::from(cap)).await?;
    drop(conn);
    // The session is open: a failure here must not fail the login (the next login, or a
    // retry, ends the extra sessions).
    if !over.is_empty()
        && let Err(err) = revoke_sessions(
            state,
            user.id,
            SessionSelector::Beyond(cap),
            event::SESSION_REVOKED,
            meta,
        )
        .await
    {
        tracing::warn!(error = %err, "ending sessions beyond the cap failed");
    }

    // Signed with the role the session was opened under: the statement above checked it.
    Issued::for_session(
        state,
        user,
        session_id,
        amr,
        refresh.0,
        (refresh_expires - now).num_seconds(),
        delivery,
    )
}
