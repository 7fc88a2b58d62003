//! Signup, login, refresh-token rotation with reuse detection, logout and sessions.

mod login;
mod logout;
mod refresh;
mod signup;

pub(crate) use login::open_session;
pub use login::{LoginOutcome, login};
pub use logout::{
    SessionSelector, access_token_is_live, delete_session, list_sessions, logout_with_refresh,
    revoke_sessions, token_revoked,
};
pub use refresh::refresh;
pub use signup::{SignupInput, signup};

use shared::tokens::{Role, Scopes};
use uuid::Uuid;

use crate::crypto::tokens::{AccessGrant, sign_access_token};
use crate::error::AuthError;
use crate::state::AppState;
use crate::store::users::UserRow;

/// How the refresh token travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Body,
    Cookie,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Body => "body",
            Delivery::Cookie => "cookie",
        }
    }
}

/// A freshly issued token pair.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    /// The access token's `scope` claim.
    pub scope: String,
    pub refresh_token: String,
    pub refresh_expires_in: i64,
    pub session_id: Uuid,
    pub delivery: Delivery,
}

impl Issued {
    /// The pair of a session just opened or rotated: an access token signed with the
    /// user's role as read in that transaction, and the session's new refresh token.
    pub(crate) fn for_session(
        state: &AppState,
        user: &UserRow,
        session_id: Uuid,
        amr: &str,
        refresh_token: String,
        refresh_expires_in: i64,
        delivery: Delivery,
    ) -> Result<Self, AuthError> {
        let (access_token, expires_in, scope) =
            access_token_for(state, user, role_of(user), session_id, amr)?;
        Ok(Self {
            access_token,
            expires_in,
            scope,
            refresh_token,
            refresh_expires_in,
            session_id,
            delivery,
        })
    }
}

pub(crate) fn role_of(user: &UserRow) -> Role {
    user.role.parse().unwrap_or(Role::User)
}

/// Sign an access token for a user's session (`amr`: the session's, space-separated).
pub fn access_token_for(
    state: &AppState,
    user: &UserRow,
    role: Role,
    session_id: Uuid,
    amr: &str,
) -> Result<(String, i64, String), AuthError> {
    let signer = state
        .keys
        .signer()
        .ok_or_else(|| anyhow::anyhow!("no active signing key"))?;
    let a = &state.settings.auth;
    let scope: Scopes = role.grantable_scopes().iter().copied().collect();
    let (token, _jti) = sign_access_token(
        &signer,
        AccessGrant {
            issuer: &a.issuer,
            audiences: &a.audiences,
            subject: user.id.to_string(),
            session_id: Some(session_id),
            role: role.as_str(),
            scope: scope.to_claim(),
            client_id: None,
            email_verified: Some(user.email_verified_at.is_some()),
            amr: Some(amr.split_whitespace().map(str::to_owned).collect()),
            ttl_secs: a.access_token_ttl_secs,
        },
    )?;
    Ok((token, a.access_token_ttl_secs, scope.to_claim()))
}
