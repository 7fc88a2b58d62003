//! Signing up: a new account and its first session.

use diesel_async::AsyncConnection;
use serde_json::json;
use shared::tokens::Role;
use uuid::Uuid;

use crate::domain::RequestMeta;
use crate::domain::{DisplayName, Email, NewPassword};
use crate::error::AuthError;
use crate::service::throttle;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::mail::{self, MailKind};
use crate::store::unique_violation;
use crate::store::users::{self, NewUser, UserRow};

pub struct SignupInput {
    pub email: String,
    pub password: String,
    pub display_name: Option<String>,
}

pub async fn signup(
    state: &AppState,
    input: SignupInput,
    meta: &RequestMeta,
) -> Result<UserRow, AuthError> {
    throttle::enforce(
        state,
        "signup-ip",
        state.settings.auth.rate_signup_ip,
        &meta.ip_key,
    )
    .await?;
    let mut errors = Vec::new();
    let email = Email::parse(&input.email).map_err(|e| errors.push(e)).ok();
    let display_name = match input.display_name.as_deref() {
        Some(raw) => DisplayName::parse(raw)
            .map_err(|e| errors.push(e))
            .ok()
            .map(DisplayName::into_inner),
        None => None,
    };
    let mut user_inputs: Vec<&str> = vec![input.email.as_str()];
    if let Some(name) = &display_name {
        user_inputs.push(name);
    }
    let password = NewPassword::parse("password", input.password.clone(), &user_inputs)
        .map_err(|e| errors.push(e))
        .ok();
    let (Some(email), Some(password)) = (email, password) else {
        return Err(AuthError::Validation(errors));
    };
    if !errors.is_empty() {
        return Err(AuthError::Validation(errors));
    }

    let mut conn = shared::db::conn(&state.pool).await?;
    // Cheap check first, so a taken email does not cost a hash; the unique index still
    // decides races.
    if users::find_by_email(&mut conn, &email.normalized())
        .await?
        .is_some()
    {
        return Err(AuthError::EmailTaken);
    }
    // No connection is held while hashing (see `login`).
    drop(conn);
    let hash = state.hashing.hash(password.into_inner()).await?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let id = Uuid::now_v7();
    let result = conn
        .transaction(async |conn| {
            let user = users::insert(
                conn,
                NewUser {
                    id,
                    email: email.as_str(),
                    password_hash: &hash,
                    display_name: display_name.as_deref(),
                    role: Role::User.as_str(),
                },
            )
            .await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::SIGNUP,
                    actor_id: Some(id),
                    subject_id: Some(id),
                    session_id: None,
                    meta,
                    details: json!({}),
                },
            )
            .await?;
            mail::enqueue(
                conn,
                MailKind::VerifyEmail,
                id,
                email.as_str(),
                &json!({}),
                None,
            )
            .await?;
            Ok::<_, diesel::result::Error>(user)
        })
        .await;
    match result {
        Ok(user) => Ok(user),
        Err(err) if unique_violation(&err) == Some("users_email_key") => Err(AuthError::EmailTaken),
        Err(err) => Err(err.into()),
    }
}
