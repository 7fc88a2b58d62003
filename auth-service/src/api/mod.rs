//! The HTTP API: one struct per resource, combined into one OpenAPI document.

pub mod admin;
pub mod auth;
pub mod dto;
pub mod edge;
pub mod oauth;
pub mod users;
pub mod wellknown;

use std::sync::Arc;

use poem_openapi::{OpenApiService, Tags};
use shared::health::HealthApi;
use shared::middleware::{ClientIp, RequestId};

use crate::domain::RequestMeta;
use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// Signup, login, refresh-token rotation, logout and sessions.
    Auth,
    /// The caller's own account.
    Users,
    /// Public signing keys and server metadata.
    Keys,
    /// Users, audit log and service clients (admins only).
    Admin,
    /// OAuth 2 endpoints for service clients.
    #[oai(rename = "OAuth")]
    OAuth,
}

pub type Apis = (
    auth::AuthApi,
    users::UsersApi,
    admin::AdminApi,
    oauth::OAuthApi,
    wellknown::WellKnownApi,
    HealthApi,
);

/// The API with its OpenAPI description.
pub fn service(state: Arc<AppState>, health: HealthApi) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            auth::AuthApi {
                state: state.clone(),
            },
            users::UsersApi {
                state: state.clone(),
            },
            admin::AdminApi {
                state: state.clone(),
            },
            oauth::OAuthApi {
                state: state.clone(),
            },
            wellknown::WellKnownApi { state },
            health,
        ),
        "auth-service",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Signup and login with argon2id passwords, short-lived EdDSA access tokens published as \
         JWKS, rotating refresh tokens with reuse detection, sessions and revocation, admin and \
         audit APIs, and OAuth 2 client credentials for services. Every error is RFC 9457 \
         problem+json with a stable `code`, except on `/oauth/*`, which answers RFC 6749 error \
         bodies.",
    )
}

/// Who is asking: the client address the edge resolved, the user agent (cut to 512
/// characters) and the request id.
pub fn request_meta(req: &poem::Request) -> RequestMeta {
    let client = req.extensions().get::<ClientIp>().map(|ip| ip.0);
    let ip = client.map(|ip| ip.to_string()).unwrap_or_default();
    let ip_key = client.map(shared::client_ip::limit_key).unwrap_or_default();
    let user_agent = req
        .headers()
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(512).collect());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .unwrap_or_default();
    RequestMeta {
        ip,
        ip_key,
        user_agent,
        request_id,
    }
}
