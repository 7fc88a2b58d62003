//! Service clients (OAuth 2 client credentials): created by an admin with a name and the
//! exact scopes they may get; the secret (256 random bits) is shown once and stored hashed.

use chrono::Utc;
use diesel_async::AsyncConnection;
use serde_json::json;
use shared::FieldError;
use shared::denylist::Revocation;
use shared::problem::FieldCode;
use shared::tokens::Scope;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::crypto::tokens::{RefreshToken, hash_token};
use crate::domain::RequestMeta;
use crate::error::AuthError;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, event};
use crate::store::clients::{self, ClientRow, NewClient};

/// A new client and its secret, which is never shown again.
pub struct NewClientSecret {
    pub client: ClientRow,
    pub secret: String,
}

/// Parse requested scopes: known, at least one, no duplicates kept.
pub fn parse_scopes(raw: &[String]) -> Result<Vec<Scope>, FieldError> {
    if raw.is_empty() {
        return Err(FieldError::new(
            "scopes",
            FieldCode::Required,
            "must list at least one scope",
        ));
    }
    let mut out = Vec::new();
    for s in raw {
        let scope = s.parse::<Scope>().map_err(|_| {
            FieldError::new(
                "scopes",
                FieldCode::InvalidValue,
                format!("{s:?} is not a known scope"),
            )
        })?;
        if !out.contains(&scope) {
            out.push(scope);
        }
    }
    Ok(out)
}

pub async fn create(
    state: &AppState,
    actor: Option<Uuid>,
    name: &str,
    scopes: &[String],
    meta: &RequestMeta,
) -> Result<NewClientSecret, AuthError> {
    let mut errors = Vec::new();
    let name = shared::text::single_line("name", name, 100)
        .map_err(|e| errors.push(e))
        .ok();
    let scopes = parse_scopes(scopes).map_err(|e| errors.push(e)).ok();
    let (Some(name), Some(scopes)) = (name, scopes) else {
        return Err(AuthError::Validation(errors));
    };
    let scopes: Vec<String> = scopes.iter().map(|s| s.as_str().to_owned()).collect();
    let secret = RefreshToken::generate().0;
    let secret_hash = hash_token(&secret);
    let id = Uuid::now_v7();
    let mut conn = shared::db::conn(&state.pool).await?;
    let client = conn
        .transaction(async |conn| {
            let client = clients::insert(
                conn,
                NewClient {
                    id,
                    name: &name,
                    scopes: &scopes,
                    secret_hash: &secret_hash,
                    created_by: actor,
                },
            )
            .await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::CLIENT_CREATED,
                    actor_id: actor,
                    subject_id: Some(id),
                    session_id: None,
                    meta,
                    details: json!({ "name": name, "scopes": scopes }),
                },
            )
            .await?;
            Ok::<_, diesel::result::Error>(client)
        })
        .await?;
    Ok(NewClientSecret { client, secret })
}

pub async fn list(
    state: &AppState,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<ClientRow>, Option<String>), AuthError> {
    let after: Option<Uuid> = cursor
        .map(|c| shared::cursor::decode(c).ok_or_else(shared::cursor::invalid))
        .transpose()?;
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = clients::list(&mut conn, after, limit + 1).await?;
    Ok(shared::cursor::split_page(rows, limit as usize, |c| {
        shared::cursor::encode(&c.id)
    }))
}

/// One client; 404 when there is none.
pub async fn get(state: &AppState, id: Uuid) -> Result<ClientRow, AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    clients::find(&mut conn, id)
        .await?
        .ok_or(AuthError::NotFound)
}

/// Delete a client; tokens it already holds are revoked.
pub async fn delete(
    state: &AppState,
    actor: Option<Uuid>,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = conn
        .transaction(async |conn| {
            let client = clients::find(conn, id).await?.ok_or(AuthError::NotFound)?;
            clients::delete(conn, id).await?;
            // No token of this client is handed out after this commits: issuing re-reads the
            // client under a share lock. So every token it ever gets is issued before now,
            // by some replica's clock; the cutoff lies the largest leeway ahead, which no
            // clock in service is off by, and covers them all.
            let cutoff = Utc::now() + chrono::Duration::seconds(shared::verify::MAX_LEEWAY_SECS);
            let rows = state
                .revocations
                .record(
                    conn,
                    &[Revocation::User {
                        user: id.to_string(),
                        before: cutoff.timestamp(),
                    }],
                    cutoff,
                )
                .await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::CLIENT_DELETED,
                    actor_id: actor,
                    subject_id: Some(id),
                    session_id: None,
                    meta,
                    details: json!({ "name": client.name }),
                },
            )
            .await?;
            Ok::<_, AuthError>(rows)
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    Ok(())
}

/// Check a client's credentials; `None` for an unknown client or a wrong secret (both
/// cost one hash comparison).
pub async fn authenticate(
    state: &AppState,
    client_id: &str,
    secret: &str,
) -> Result<Option<ClientRow>, AuthError> {
    let presented = hash_token(secret);
    let Ok(id) = client_id.parse::<Uuid>() else {
        return Ok(None);
    };
    let mut conn = shared::db::conn(&state.pool).await?;
    let client = clients::find(&mut conn, id).await?;
    Ok(client.filter(|c| bool::from(c.secret_hash.ct_eq(&presented))))
}
