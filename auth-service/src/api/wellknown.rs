//! `/.well-known/jwks.json`: the public keys verifiers check signatures with.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, OpenApi};

use crate::api::ApiTags;
use crate::state::AppState;

pub struct WellKnownApi {
    pub state: Arc<AppState>,
}

#[derive(ApiResponse)]
pub enum JwksResponse {
    /// The JSON Web Key Set: every key that signs now, will sign soon, or signed tokens that
    /// have not expired yet.
    #[oai(status = 200)]
    Ok(
        Json<Any<serde_json::Value>>,
        /// `public, max-age=...`: verifiers may cache it that long (and refetch on an
        /// unknown `kid`).
        #[oai(header = "Cache-Control")]
        String,
    ),
}

#[OpenApi(tag = "ApiTags::Keys")]
impl WellKnownApi {
    /// The public signing keys (RFC 7517), each with its `kid`.
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self) -> JwksResponse {
        let body = self.state.keys.jwks().as_ref().clone();
        let max_age = self.state.settings.auth.jwks_max_age_secs;
        JwksResponse::Ok(Json(Any(body)), format!("public, max-age={max_age}"))
    }
}
