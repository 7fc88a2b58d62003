//! The HTTP API: one struct per resource, combined into one OpenAPI document.

pub mod admin;
pub mod auth;
pub mod dto;
pub mod oauth;
pub mod users;
pub mod wellknown;

use std::sync::Arc;

use poem_openapi::{OpenApiService, Tags};
use shared::health::HealthApi;

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
