//! Operating the service: users (list, role, disable, delete) and the audit log.
//!
//! Role changes, disabling and deletion revoke every session of the user through the same
//! path as logout (durable record, then the Redis denylist), so a demoted admin loses admin
//! rights everywhere within a second. The last enabled admin can be neither demoted,
//! disabled nor deleted; the enabled admins are locked while that is decided.

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde_json::json;
use shared::denylist::Revocation;
use shared::problem::FieldCode;
use shared::tokens::Role;
use uuid::Uuid;

use crate::domain::RequestMeta;
use crate::error::AuthError;
use crate::service::throttle;
use crate::state::AppState;
use crate::store::audit::{self, AuditEntry, AuditQuery, AuditRow, event};
use crate::store::revocations::RevocationRow;
use crate::store::users::{self, UserQuery, UserRow};
use crate::store::{outbox, sessions};

pub struct UserFilter {
    pub q: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// One page of users (creation order) and the cursor of the next.
pub async fn list_users(
    state: &AppState,
    filter: UserFilter,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<UserRow>, Option<String>), AuthError> {
    let after: Option<Uuid> = cursor
        .map(|c| shared::cursor::decode(c).ok_or_else(shared::cursor::invalid))
        .transpose()?;
    let prefix = filter.q.map(|q| q.trim().to_lowercase());
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = users::list(
        &mut conn,
        UserQuery {
            email_prefix: prefix.as_deref(),
            role: filter.role.map(Role::as_str),
            disabled: filter.disabled,
            after,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(shared::cursor::split_page(rows, limit as usize, |u| {
        shared::cursor::encode(&u.id)
    }))
}

pub async fn get_user(state: &AppState, id: Uuid) -> Result<UserRow, AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    users::find(&mut conn, id).await?.ok_or(AuthError::NotFound)
}

fn last_admin() -> AuthError {
    AuthError::Conflict("The last enabled admin cannot be demoted, disabled or deleted.".into())
}

/// Revoke every session of `user`, in `conn`'s transaction; every user token carries its
/// session, so this kills them all. (A per-user cutoff would also kill a token the user gets
/// by logging in again within the same second.) Returns the durable rows to publish after
/// commit.
async fn revoke_everything(
    state: &AppState,
    conn: &mut AsyncPgConnection,
    user: Uuid,
    reason: &str,
) -> diesel::QueryResult<Vec<RevocationRow>> {
    let now = Utc::now();
    let all = sessions::Revoke::AllOf {
        user_id: user,
        except: None,
    };
    let revoked = sessions::revoke(conn, all, reason, now).await?;
    let revocations: Vec<Revocation> = revoked
        .iter()
        .map(|s| Revocation::Session(s.to_string()))
        .collect();
    state.revocations.record(conn, &revocations, now).await
}

/// Change a user's role and/or disabled flag (only those fields).
pub async fn update_user(
    state: &AppState,
    actor: Option<Uuid>,
    id: Uuid,
    role: Option<Role>,
    disabled: Option<bool>,
    meta: &RequestMeta,
) -> Result<UserRow, AuthError> {
    if let Some(Role::Service) = role {
        return Err(shared::FieldError::new(
            "role",
            FieldCode::InvalidValue,
            "must be user or admin",
        )
        .into());
    }
    let mut conn = shared::db::conn(&state.pool).await?;
    let (user, rows, newly_disabled) = conn
        .transaction(async |conn| {
            let admins = users::lock_active_admins(conn).await?;
            let current = users::find(conn, id).await?.ok_or(AuthError::NotFound)?;
            let new_role = role.map_or(current.role.clone(), |r| r.as_str().to_owned());
            let new_disabled = disabled.unwrap_or(current.disabled);
            let was_active_admin = admins.contains(&id);
            let stays_active_admin = new_role == "admin" && !new_disabled;
            if was_active_admin && !stays_active_admin && admins.len() == 1 {
                return Err(last_admin());
            }
            let role_changed = new_role != current.role;
            let newly_disabled = new_disabled && !current.disabled;
            // Moving the epoch (under the row lock, before the sessions are revoked) keeps a
            // login in flight from opening a session with the old role or while disabled.
            let user = users::set_role_and_disabled(
                conn,
                id,
                &new_role,
                new_disabled,
                role_changed || newly_disabled,
            )
            .await?;
            let rows = if role_changed || newly_disabled {
                revoke_everything(
                    state,
                    conn,
                    id,
                    if newly_disabled {
                        "disabled"
                    } else {
                        "role_changed"
                    },
                )
                .await?
            } else {
                Vec::new()
            };
            if role_changed {
                audit::record(
                    conn,
                    AuditEntry {
                        event: event::ROLE_CHANGED,
                        actor_id: actor,
                        subject_id: Some(id),
                        session_id: None,
                        meta,
                        details: json!({ "from": current.role, "to": new_role }),
                    },
                )
                .await?;
            }
            if new_disabled != current.disabled {
                audit::record(
                    conn,
                    AuditEntry {
                        event: if new_disabled {
                            event::USER_DISABLED
                        } else {
                            event::USER_ENABLED
                        },
                        actor_id: actor,
                        subject_id: Some(id),
                        session_id: None,
                        meta,
                        details: json!({}),
                    },
                )
                .await?;
            }
            Ok::<_, AuthError>((user, rows, newly_disabled))
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    if newly_disabled {
        throttle::forget_known_ips(state, &user.email.trim().to_lowercase()).await;
    }
    Ok(user)
}

/// Delete a user: revoke everything, tell other services (their todos go too), audit.
pub async fn delete_user(
    state: &AppState,
    actor: Uuid,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<(), AuthError> {
    let mut conn = shared::db::conn(&state.pool).await?;
    let rows = conn
        .transaction(async |conn| {
            let admins = users::lock_active_admins(conn).await?;
            let user = users::find(conn, id).await?.ok_or(AuthError::NotFound)?;
            if admins.contains(&id) && admins.len() == 1 {
                return Err(last_admin());
            }
            // Lock the row first: a login in flight then opens no session that the deletion
            // (and its revocations) would miss.
            users::bump_epoch(conn, id).await?;
            let rows = revoke_everything(state, conn, id, "deleted").await?;
            outbox::insert(
                conn,
                shared::events::USER_DELETED,
                &json!(shared::events::UserDeleted {
                    user_id: id.to_string()
                }),
            )
            .await?;
            // The deletion (with its cascade to sessions, then their tokens) before the audit
            // event, as everywhere.
            users::delete(conn, id).await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::USER_DELETED,
                    actor_id: Some(actor),
                    subject_id: Some(id),
                    session_id: None,
                    meta,
                    details: json!({ "role": user.role }),
                },
            )
            .await?;
            Ok::<_, AuthError>(rows)
        })
        .await?;
    state.revocations.publish(&mut conn, rows).await;
    if let Err(err) = state.events.publish_pending().await {
        tracing::warn!(error = %err, "publishing the user_deleted event failed; will retry");
    }
    Ok(())
}

pub struct AuditFilter {
    pub user_id: Option<Uuid>,
    pub event: Option<String>,
}

/// Audit events, newest first. The events still waiting to be chained are chained first
/// (the first page shows what was just done); with a cursor, the page continues the
/// listing it came from.
pub async fn list_audit(
    state: &AppState,
    filter: AuditFilter,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<AuditRow>, Option<String>), AuthError> {
    let before_id: Option<i64> = cursor
        .map(|c| shared::cursor::decode(c).ok_or_else(shared::cursor::invalid))
        .transpose()?;
    let mut conn = shared::db::conn(&state.pool).await?;
    if before_id.is_none() {
        // Best effort: a chain that cannot move now still leaves the log readable.
        if let Err(err) = crate::store::audit_chain::chain_all(&mut conn, 10).await {
            tracing::warn!(error = %err, "chaining audit events before listing failed");
        }
    }
    let rows = audit::list(
        &mut conn,
        AuditQuery {
            user_id: filter.user_id,
            event: filter.event.as_deref(),
            before_id,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(shared::cursor::split_page(rows, limit as usize, |r| {
        shared::cursor::encode(&r.id)
    }))
}

/// What `create-admin` did.
pub enum AdminSetup {
    Created(UserRow),
    Promoted(UserRow),
    AlreadyAdmin(UserRow),
}

/// `auth-service create-admin`: promote the account with this email, or create it as an
/// admin with `password` (asked for only when needed).
pub async fn create_or_promote_admin(
    state: &AppState,
    email: &str,
    password: impl FnOnce() -> anyhow::Result<String>,
    meta: &RequestMeta,
) -> Result<AdminSetup, AuthError> {
    let email = crate::domain::Email::parse(email)?;
    let mut conn = shared::db::conn(&state.pool).await?;
    if let Some(user) = users::find_by_email(&mut conn, &email.normalized()).await? {
        if user.role == Role::Admin.as_str() {
            return Ok(AdminSetup::AlreadyAdmin(user));
        }
        drop(conn);
        let user = update_user(state, None, user.id, Some(Role::Admin), Some(false), meta).await?;
        return Ok(AdminSetup::Promoted(user));
    }
    let password = crate::domain::NewPassword::parse("password", password()?, &[email.as_str()])?;
    let hash = state.hashing.hash(password.into_inner()).await?;
    let id = Uuid::now_v7();
    let user = conn
        .transaction(async |conn| {
            let user = users::insert(
                conn,
                users::NewUser {
                    id,
                    email: email.as_str(),
                    password_hash: &hash,
                    display_name: None,
                    role: Role::Admin.as_str(),
                },
            )
            .await?;
            audit::record(
                conn,
                AuditEntry {
                    event: event::ADMIN_CREATED,
                    actor_id: None,
                    subject_id: Some(id),
                    session_id: None,
                    meta,
                    details: json!({ "via": "cli" }),
                },
            )
            .await?;
            Ok::<_, diesel::result::Error>(user)
        })
        .await?;
    Ok(AdminSetup::Created(user))
}
