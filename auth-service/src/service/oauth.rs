//! OAuth 2 endpoints for service clients: the token endpoint (client credentials and
//! refresh token grants, RFC 6749), revocation (RFC 7009) and introspection (RFC 7662).
//! Errors here are RFC 6749 §5.2 bodies, not problem documents.

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde_json::json;
use shared::denylist::Revocation;
use shared::tokens::{AccessClaims, Principal, Role, Scope, Scopes};

use crate::crypto::tokens::{AccessGrant, hash_token, sign_access_token};
use crate::domain::RequestMeta;
pub use crate::domain::{OAuthCode, OAuthError};
use crate::error::AuthError;
use crate::service::auth::{self, Delivery};
use crate::service::{clients, throttle};
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::clients as clients_store;
use crate::store::clients::ClientRow;
use crate::store::{revocations, sessions};

/// Failures: an OAuth error for the client, or a service fault (problem+json 5xx).
#[derive(Debug)]
pub enum Failure {
    OAuth(OAuthError),
    Service(AuthError),
}

impl From<AuthError> for Failure {
    fn from(err: AuthError) -> Self {
        Failure::Service(err)
    }
}

impl From<OAuthError> for Failure {
    fn from(err: OAuthError) -> Self {
        Failure::OAuth(err)
    }
}

/// A client's id and secret, as the caller sent them (by HTTP Basic or in the form).
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: String,
}

/// Authenticate the calling client (`creds` is what the request carried, or why it carried
/// none usable); failures are audited.
pub async fn authenticate_client(
    state: &AppState,
    creds: Result<ClientCredentials, OAuthError>,
    meta: &RequestMeta,
) -> Result<ClientRow, Failure> {
    let claimed = creds
        .as_ref()
        .map_or("unknown", |c| c.id.as_str())
        .to_owned();
    // The per-ip limit first, before any database work. Then the secret (one indexed read
    // and a hash compare): a client that proves it is limited under a budget of its own, so
    // that no one who knows its public id can lock it out. Failures are limited per client
    // and throttled without lockout, like logins.
    let a = &state.settings.auth;
    throttle::enforce(state, "token-ip", a.rate_token_ip, &meta.ip_key)
        .await
        .map_err(AuthError::from)?;
    let client = match &creds {
        Ok(c) => clients::authenticate(state, &c.id, &c.secret).await?,
        Err(_) => None,
    };
    throttle::check_client(state, &claimed, &meta.ip_key, client.is_some())
        .await
        .map_err(AuthError::from)?;
    let subject = throttle::Subject::Client(&claimed);
    let id = match (creds, client) {
        (_, Some(client)) => {
            throttle::record_success(state, subject, &meta.ip_key).await;
            return Ok(client);
        }
        (Ok(c), None) => Some(c.id),
        (Err(err), None) if err.error != OAuthCode::InvalidClient => return Err(err.into()),
        (Err(_), None) => None,
    };
    throttle::record_failure(state, subject, &meta.ip_key).await;
    // A wrong secret costs no hash: audit the first failure per client and address in a
    // minute, count the rest (see `throttle::audit_refusal`).
    if throttle::audit_refusal(state, subject, &meta.ip_key).await {
        let mut conn = shared::db::conn(&state.pool)
            .await
            .map_err(AuthError::from)?;
        audit::record(
            &mut conn,
            AuditEntry {
                event: event::CLIENT_AUTH_FAILED,
                actor_id: None,
                subject_id: id.and_then(|id| id.parse().ok()),
                session_id: None,
                meta,
                details: json!({}),
            },
        )
        .await
        .map_err(AuthError::from)?;
    }
    Err(OAuthError::new(OAuthCode::InvalidClient, "Client authentication failed.").into())
}

/// A successful token response.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
    pub scope: String,
    pub refresh_token: Option<String>,
}

/// `grant_type=client_credentials`.
pub async fn client_credentials(
    state: &AppState,
    client: &ClientRow,
    scope: Option<&str>,
    meta: &RequestMeta,
) -> Result<Issued, Failure> {
    let allowed: Scopes = client
        .scopes
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let granted = match scope.map(str::trim).filter(|s| !s.is_empty()) {
        None => allowed,
        Some(requested) => {
            let mut granted = Scopes::default();
            for name in requested.split(' ').filter(|s| !s.is_empty()) {
                match name.parse() {
                    Ok(scope) if allowed.contains(scope) => granted.insert(scope),
                    _ => {
                        return Err(OAuthError::new(
                            OAuthCode::InvalidScope,
                            format!("The scope {name:?} is not allowed for this client."),
                        )
                        .into());
                    }
                }
            }
            granted
        }
    };
    let signer = state
        .keys
        .signer()
        .ok_or_else(|| AuthError::Internal(anyhow::anyhow!("no active signing key")))?;
    let a = &state.settings.auth;
    let client_id = client.id.to_string();
    let (token, jti) = sign_access_token(
        &signer,
        AccessGrant {
            issuer: &a.issuer,
            audiences: &a.audiences,
            subject: client_id.clone(),
            session_id: None,
            role: Role::Service.as_str(),
            scope: granted.to_claim(),
            client_id: Some(client_id),
            email_verified: None,
            amr: None,
            ttl_secs: a.access_token_ttl_secs,
        },
    )
    .map_err(AuthError::from)?;
    // Handed out only if the client still exists, read under a share lock in the
    // transaction that audits the issue: a deletion either waits for it (and its cutoff
    // covers the token) or has removed the client (and the token is never seen).
    let mut conn = shared::db::conn(&state.pool)
        .await
        .map_err(AuthError::from)?;
    let issued = conn
        .transaction(async |conn| {
            if !clients_store::lock_shared(conn, client.id).await? {
                return Ok(false);
            }
            audit::record(
                conn,
                AuditEntry {
                    event: event::TOKEN_ISSUED,
                    actor_id: Some(client.id),
                    subject_id: Some(client.id),
                    session_id: None,
                    meta,
                    details: json!({ "jti": jti, "scope": granted.to_claim() }),
                },
            )
            .await?;
            Ok::<_, diesel::result::Error>(true)
        })
        .await
        .map_err(AuthError::from)?;
    if !issued {
        return Err(
            OAuthError::new(OAuthCode::InvalidClient, "Client authentication failed.").into(),
        );
    }
    Ok(Issued {
        access_token: token,
        expires_in: a.access_token_ttl_secs,
        scope: granted.to_claim(),
        refresh_token: None,
    })
}

/// `grant_type=refresh_token`: the same rotation as `/v1/auth/refresh`.
pub async fn refresh(
    state: &AppState,
    token: Option<&str>,
    meta: &RequestMeta,
) -> Result<Issued, Failure> {
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::new(OAuthCode::InvalidRequest, "refresh_token is required."))?;
    match auth::refresh(state, token, Delivery::Body, meta).await {
        Ok(issued) => Ok(Issued {
            access_token: issued.access_token,
            expires_in: issued.expires_in,
            scope: issued.scope,
            refresh_token: Some(issued.refresh_token),
        }),
        Err(AuthError::RefreshInvalid) => Err(OAuthError::new(
            OAuthCode::InvalidGrant,
            "The refresh token is invalid, expired or revoked.",
        )
        .into()),
        Err(AuthError::RefreshReused) => Err(OAuthError::new(
            OAuthCode::InvalidGrant,
            "The refresh token was already used; the session has been revoked.",
        )
        .into()),
        Err(other) => Err(other.into()),
    }
}

/// What introspection says about a token (RFC 7662).
pub enum Introspection {
    Inactive,
    Access(AccessClaims),
    Refresh {
        user_id: String,
        session_id: String,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
}

/// Whether `client` may revoke or introspect any token (RFC 7009 2.1, RFC 7662 2.1): with
/// the `tokens:introspect` scope. Without it, only tokens issued to the client itself.
fn acts_on_any_token(client: &ClientRow) -> bool {
    client
        .scopes
        .iter()
        .any(|s| s == Scope::TokensIntrospect.as_str())
}

/// Whether an access token was issued to `client`.
fn issued_to(claims: &AccessClaims, client: &ClientRow) -> bool {
    claims.client_id.as_deref() == Some(client.id.to_string().as_str())
}

/// Introspect for `client`. A token the client may not see is inactive, like an unknown one
/// (RFC 7662 2.2), so that no client can test others' tokens.
pub async fn introspect(
    state: &AppState,
    client: &ClientRow,
    token: &str,
) -> Result<Introspection, AuthError> {
    if token.is_empty() || token.len() > 8192 {
        return Ok(Introspection::Inactive);
    }
    let any = acts_on_any_token(client);
    let now = Utc::now();
    if token.matches('.').count() == 2 {
        let Ok(claims) = state.verifier.verify(token).await else {
            return Ok(Introspection::Inactive);
        };
        if !any && !issued_to(&claims, client) {
            tracing::info!("introspection of a token not issued to the caller answered inactive");
            return Ok(Introspection::Inactive);
        }
        let mut conn = shared::db::conn(&state.pool).await?;
        let principal = Principal::from_claims(&claims);
        let issued_at = DateTime::from_timestamp(claims.iat, 0).unwrap_or_default();
        if revocations::covers(&mut conn, &claims.jti, &claims.sub, issued_at, now).await? {
            return Ok(Introspection::Inactive);
        }
        if let (Some(user), Some(sid)) = (principal.user_id(), principal.session_id)
            && !sessions::token_is_live(&mut conn, sid, user, &claims.jti, now).await?
        {
            return Ok(Introspection::Inactive);
        }
        return Ok(Introspection::Access(claims));
    }
    // Refresh tokens belong to users' sessions, never to a client.
    if !any {
        return Ok(Introspection::Inactive);
    }
    let mut conn = shared::db::conn(&state.pool).await?;
    let Some((token, session)) = sessions::find_refresh(&mut conn, &hash_token(token)).await?
    else {
        return Ok(Introspection::Inactive);
    };
    let idle = state.idle_ttl();
    let live = token.used_at.is_none()
        && token.expires_at > now
        && session.revoked_at.is_none()
        && session.expires_at > now
        && session.last_used_at + idle > now;
    Ok(if live {
        Introspection::Refresh {
            user_id: session.user_id.to_string(),
            session_id: session.id.to_string(),
            issued_at: token.issued_at,
            expires_at: token.expires_at,
        }
    } else {
        Introspection::Inactive
    })
}

/// Revoke a token (RFC 7009): an access token's `jti`, or a refresh token's whole session.
/// A client revokes only tokens issued to it, unless it holds `tokens:introspect`. Unknown
/// and invalid tokens, and tokens the client may not revoke, are all answered alike with
/// nothing done: a different answer would let any client test stolen tokens.
pub async fn revoke(
    state: &AppState,
    client: &ClientRow,
    token: &str,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    if token.is_empty() || token.len() > 8192 {
        return Ok(());
    }
    let any = acts_on_any_token(client);
    if token.matches('.').count() == 2 {
        let Ok(claims) = state.verifier.verify_still_accepted_anywhere(token).await else {
            return Ok(());
        };
        if !any && !issued_to(&claims, client) {
            tracing::info!("revocation of a token not issued to the caller ignored");
            return Ok(());
        }
        let now = Utc::now();
        let mut conn = shared::db::conn(&state.pool).await?;
        let rows = conn
            .transaction(async |conn| {
                let rows = state
                    .revocations
                    .record(conn, &[Revocation::Token(claims.jti.clone())], now)
                    .await?;
                audit::record(
                    conn,
                    AuditEntry {
                        event: event::TOKEN_REVOKED,
                        actor_id: Some(client.id),
                        subject_id: claims.sub.parse().ok(),
                        session_id: claims.sid.as_deref().and_then(|s| s.parse().ok()),
                        meta,
                        details: json!({ "jti": claims.jti, "token_type": "access_token" }),
                    },
                )
                .await?;
                Ok::<_, diesel::result::Error>(rows)
            })
            .await?;
        state.revocations.publish(&mut conn, rows).await;
        return Ok(());
    }
    if !any {
        tracing::info!(
            "revocation of a refresh token by a client without tokens:introspect ignored"
        );
        return Ok(());
    }
    auth::logout_with_refresh(state, token, meta).await
}
