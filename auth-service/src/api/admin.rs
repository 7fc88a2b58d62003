//! `/v1/admin/*`: users, the audit log and service clients. Admins only.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use shared::body::JsonBody;
use shared::page::Page;
use shared::patterned::{Cursor, Filter, SingleLine};
use shared::problem::ApiErr;
use shared::tokens::{Principal, Role, Scope};
use shared::verify::BearerAuth;
use shared::{ApiError, error_set};
use uuid::Uuid;

use crate::api::ApiTags;
use crate::api::auth::{NoContent, user_of};
use crate::api::dto::User;
use crate::api::request_meta;
use crate::error::AuthError;
use crate::service::admin::{self, AuditFilter, UserFilter};
use crate::service::clients;
use crate::state::AppState;
use crate::store::audit::AuditRow;
use crate::store::clients::ClientRow;

pub struct AdminApi {
    pub state: Arc<AppState>,
}

/// The only fields an admin can change; absent or null leaves a field as it is.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct UpdateUserRequest {
    #[oai(nullable)]
    pub role: Option<AssignableRole>,
    #[oai(nullable)]
    pub disabled: Option<bool>,
}

/// The roles an admin can give a user (`service` belongs to clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum AssignableRole {
    User,
    Admin,
}

impl From<AssignableRole> for Role {
    fn from(r: AssignableRole) -> Self {
        match r {
            AssignableRole::User => Role::User,
            AssignableRole::Admin => Role::Admin,
        }
    }
}

/// One audit event.
#[derive(Debug, Object)]
pub struct AuditEvent {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    /// `signup`, `login_succeeded`, `login_failed`, `refresh`, `refresh_reuse_detected`,
    /// `logout`, `logout_all`, `session_revoked`, `password_changed`, `role_changed`,
    /// `user_disabled`, `user_enabled`, `user_deleted`, `client_created`, `client_deleted`, ...
    pub event: String,
    /// Who did it (a user or client id), when known.
    #[oai(nullable)]
    pub actor_id: Option<Uuid>,
    /// Whom it concerns.
    #[oai(nullable)]
    pub subject_id: Option<Uuid>,
    #[oai(nullable)]
    pub session_id: Option<Uuid>,
    #[oai(nullable)]
    pub ip: Option<String>,
    #[oai(nullable)]
    pub user_agent: Option<String>,
    #[oai(nullable)]
    pub request_id: Option<String>,
    /// Event-specific facts; never a password, hash or token.
    pub details: Any<serde_json::Value>,
}

impl From<AuditRow> for AuditEvent {
    fn from(r: AuditRow) -> Self {
        Self {
            id: r.id,
            occurred_at: r.occurred_at,
            event: r.event,
            actor_id: r.actor_id,
            subject_id: r.subject_id,
            session_id: r.session_id,
            ip: r.ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            details: Any(r.details),
        }
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
pub struct CreateClientRequest {
    /// 1 to 100 characters, not blank; no control characters.
    pub name: SingleLine<100>,
    /// The exact scopes the client may request, e.g. `["todos:admin"]`.
    #[oai(validator(min_items = 1))]
    pub scopes: Vec<Scope>,
}

/// A service client. Its secret is only ever shown at creation.
#[derive(Debug, Object)]
pub struct Client {
    pub id: Uuid,
    /// The OAuth `client_id` (the id as a string).
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    #[oai(nullable)]
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<ClientRow> for Client {
    fn from(c: ClientRow) -> Self {
        Self {
            client_id: c.id.to_string(),
            id: c.id,
            name: c.name,
            scopes: c.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
            created_by: c.created_by,
            created_at: c.created_at,
        }
    }
}

/// A new client with its secret: store the secret now, it cannot be shown again.
#[derive(Debug, Object)]
pub struct CreatedClient {
    #[oai(flatten)]
    pub client: Client,
    pub client_secret: String,
}

#[derive(ApiResponse)]
pub enum UserPageResponse {
    /// One page of users, oldest first.
    #[oai(status = 200)]
    Ok(Json<Page<User>>),
}

#[derive(ApiResponse)]
pub enum UserResponse {
    /// The user.
    #[oai(status = 200)]
    Ok(Json<User>),
}

#[derive(ApiResponse)]
pub enum AuditResponse {
    /// One page of audit events, newest first.
    #[oai(status = 200)]
    Ok(Json<Page<AuditEvent>>),
}

#[derive(ApiResponse)]
pub enum CreateClientResponse {
    /// Created; `client_secret` is shown only now.
    #[oai(status = 201)]
    Created(Json<CreatedClient>),
}

#[derive(ApiResponse)]
pub enum ClientResponse {
    /// The client (never its secret).
    #[oai(status = 200)]
    Ok(Json<Client>),
}

#[derive(ApiResponse)]
pub enum ClientPageResponse {
    /// One page of clients, oldest first.
    #[oai(status = 200)]
    Ok(Json<Page<Client>>),
}

error_set!(pub AdminReadErrors: 401, 403, 404, 422);
error_set!(pub AdminWriteErrors: 401, 403, 404, 409, 413, 415, 422);

/// The admin behind the token.
fn admin(principal: &Principal) -> Result<Uuid, AuthError> {
    principal.require_role(Role::Admin)?;
    user_of(principal)
}

fn limit(raw: Option<u32>) -> Result<i64, ApiError> {
    shared::cursor::page_limit(raw).map(i64::from)
}

#[OpenApi(prefix_path = "/v1/admin", tag = "ApiTags::Admin")]
impl AdminApi {
    /// Users, oldest first; filter by email prefix (`q`), `role` and `disabled`.
    #[oai(path = "/users", method = "get", operation_id = "adminListUsers")]
    async fn list_users(
        &self,
        auth: BearerAuth,
        /// Email prefix, case-insensitive.
        q: Query<Option<Filter>>,
        role: Query<Option<Role>>,
        disabled: Query<Option<bool>>,
        /// 1 to 100, default 20.
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        cursor: Query<Option<Cursor>>,
    ) -> Result<UserPageResponse, ApiErr<AdminReadErrors>> {
        admin(&auth.0)?;
        let filter = UserFilter {
            q: q.0.map(Filter::into_inner),
            role: role.0,
            disabled: disabled.0,
        };
        let (rows, next_cursor) = admin::list_users(
            &self.state,
            filter,
            cursor.0.as_deref(),
            self::limit(limit.0)?,
        )
        .await?;
        Ok(UserPageResponse::Ok(Json(Page::of(
            rows,
            next_cursor,
            User::from,
        ))))
    }

    /// One user.
    #[oai(path = "/users/:id", method = "get", operation_id = "adminGetUser")]
    async fn get_user(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<UserResponse, ApiErr<AdminReadErrors>> {
        admin(&auth.0)?;
        let user = admin::get_user(&self.state, id.0).await?;
        Ok(UserResponse::Ok(Json(user.into())))
    }

    /// Change `role` and/or `disabled` (nothing else can change here). Both revoke the
    /// user's sessions and issued access tokens. The last enabled admin cannot be demoted
    /// or disabled (409).
    #[oai(
        path = "/users/:id",
        method = "patch",
        operation_id = "adminUpdateUser"
    )]
    async fn update_user(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: JsonBody<UpdateUserRequest>,
    ) -> Result<UserResponse, ApiErr<AdminWriteErrors>> {
        let actor = admin(&auth.0)?;
        let meta = request_meta(req);
        let user = admin::update_user(
            &self.state,
            Some(actor),
            id.0,
            body.0.role.map(Role::from),
            body.0.disabled,
            &meta,
        )
        .await?;
        Ok(UserResponse::Ok(Json(user.into())))
    }

    /// Delete a user: sessions and tokens are revoked, other services are told (the TODO
    /// service deletes their todos). The last enabled admin cannot be deleted (409).
    #[oai(
        path = "/users/:id",
        method = "delete",
        operation_id = "adminDeleteUser"
    )]
    async fn delete_user(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiErr<AdminWriteErrors>> {
        let actor = admin(&auth.0)?;
        admin::delete_user(&self.state, actor, id.0, &request_meta(req)).await?;
        Ok(NoContent::Done)
    }

    /// Remove a user's second factors (the user lost them): the authenticator app and its
    /// recovery codes. Every session of the user is revoked; audited as `mfa_reset`, and the
    /// user is mailed a notice.
    #[oai(
        path = "/users/:id/mfa",
        method = "delete",
        operation_id = "adminResetMfa"
    )]
    async fn reset_mfa(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiErr<AdminWriteErrors>> {
        let actor = admin(&auth.0)?;
        crate::service::mfa::admin_reset(&self.state, actor, id.0, &request_meta(req)).await?;
        Ok(NoContent::Done)
    }

    /// Audit events, newest first; filter by `user_id` (subject or actor) and `event`.
    #[oai(path = "/audit", method = "get", operation_id = "adminListAudit")]
    async fn audit(
        &self,
        auth: BearerAuth,
        user_id: Query<Option<Uuid>>,
        event: Query<Option<Filter>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        cursor: Query<Option<Cursor>>,
    ) -> Result<AuditResponse, ApiErr<AdminReadErrors>> {
        admin(&auth.0)?;
        let filter = AuditFilter {
            user_id: user_id.0,
            event: event.0.map(Filter::into_inner),
        };
        let (rows, next_cursor) = admin::list_audit(
            &self.state,
            filter,
            cursor.0.as_deref(),
            self::limit(limit.0)?,
        )
        .await?;
        Ok(AuditResponse::Ok(Json(Page::of(
            rows,
            next_cursor,
            AuditEvent::from,
        ))))
    }

    /// Create a service client with a name and the exact scopes it may get.
    #[oai(path = "/clients", method = "post", operation_id = "adminCreateClient")]
    async fn create_client(
        &self,
        req: &Request,
        auth: BearerAuth,
        body: JsonBody<CreateClientRequest>,
    ) -> Result<CreateClientResponse, ApiErr<AdminWriteErrors>> {
        let actor = admin(&auth.0)?;
        let meta = request_meta(req);
        let created = clients::create(
            &self.state,
            Some(actor),
            &body.0.name,
            &body
                .0
                .scopes
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect::<Vec<_>>(),
            &meta,
        )
        .await?;
        Ok(CreateClientResponse::Created(Json(CreatedClient {
            client: created.client.into(),
            client_secret: created.secret,
        })))
    }

    /// Service clients, oldest first. Secrets are never shown.
    #[oai(path = "/clients", method = "get", operation_id = "adminListClients")]
    async fn list_clients(
        &self,
        auth: BearerAuth,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<u32>>,
        cursor: Query<Option<Cursor>>,
    ) -> Result<ClientPageResponse, ApiErr<AdminReadErrors>> {
        admin(&auth.0)?;
        let (rows, next_cursor) =
            clients::list(&self.state, cursor.0.as_deref(), self::limit(limit.0)?).await?;
        Ok(ClientPageResponse::Ok(Json(Page::of(
            rows,
            next_cursor,
            Client::from,
        ))))
    }

    /// One service client. Its secret is never shown.
    #[oai(path = "/clients/:id", method = "get", operation_id = "adminGetClient")]
    async fn get_client(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<ClientResponse, ApiErr<AdminReadErrors>> {
        admin(&auth.0)?;
        let client = clients::get(&self.state, id.0).await?;
        Ok(ClientResponse::Ok(Json(client.into())))
    }

    /// Delete a service client; its tokens are revoked.
    #[oai(
        path = "/clients/:id",
        method = "delete",
        operation_id = "adminDeleteClient"
    )]
    async fn delete_client(
        &self,
        req: &Request,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<NoContent, ApiErr<AdminWriteErrors>> {
        let actor = admin(&auth.0)?;
        clients::delete(&self.state, Some(actor), id.0, &request_meta(req)).await?;
        Ok(NoContent::Done)
    }
}
