//! The HTTP API, combined into one OpenAPI document.

pub mod admin;
pub mod dto;
pub mod preconditions;
pub mod todos;

use std::sync::Arc;

use poem_openapi::{OpenApiService, Tags};
use shared::health::HealthApi;

use crate::state::AppState;

#[derive(Tags)]
pub enum ApiTags {
    /// The caller's todos.
    Todos,
    /// Any owner's todos (`todos:admin`).
    Admin,
}

pub type Apis = (todos::TodosApi, admin::AdminApi, HealthApi);

pub fn service(state: Arc<AppState>, health: HealthApi) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            todos::TodosApi {
                state: state.clone(),
            },
            admin::AdminApi { state },
            health,
        ),
        "todo-service",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "A TODO resource API. It verifies access tokens from the auth service locally \
         (signature with the published JWKS, claims, and the revocation denylist) and never \
         calls the auth service on the request path. Every error is RFC 9457 problem+json \
         with a stable `code`.",
    )
}
