//! `/.well-known/jwks.json`: the public keys verifiers check signatures with.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::types::Any;
use poem_openapi::{ApiResponse, OpenApi};
use shared::tokens::Scope;

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

#[derive(ApiResponse)]
pub enum MetadataResponse {
    /// Authorization server metadata (RFC 8414).
    #[oai(status = 200)]
    Ok(
        Json<Any<serde_json::Value>>,
        #[oai(header = "Cache-Control")] String,
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

    /// OAuth 2 authorization server metadata (RFC 8414): the issuer, the token,
    /// revocation, introspection and JWKS endpoints, grant types and client authentication
    /// methods.
    #[oai(
        path = "/.well-known/oauth-authorization-server",
        method = "get",
        operation_id = "oauthMetadata"
    )]
    async fn metadata(&self) -> MetadataResponse {
        let issuer = self.state.settings.auth.issuer.trim_end_matches('/');
        let auth_methods = ["client_secret_basic", "client_secret_post"];
        let scopes: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        let body = serde_json::json!({
            "issuer": issuer,
            "token_endpoint": format!("{issuer}/oauth/token"),
            "revocation_endpoint": format!("{issuer}/oauth/revoke"),
            "introspection_endpoint": format!("{issuer}/oauth/introspect"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials", "refresh_token"],
            "response_types_supported": [],
            "token_endpoint_auth_methods_supported": auth_methods,
            "revocation_endpoint_auth_methods_supported": auth_methods,
            "introspection_endpoint_auth_methods_supported": auth_methods,
            "scopes_supported": scopes,
            "service_documentation": format!("{issuer}/docs"),
            // Not registered in RFC 8414: who may act on which token at the revocation and
            // introspection endpoints.
            "revocation_endpoint_scope_for_any_token": Scope::TokensIntrospect.as_str(),
            "introspection_endpoint_scope_for_any_token": Scope::TokensIntrospect.as_str(),
        });
        let max_age = self.state.settings.auth.jwks_max_age_secs;
        MetadataResponse::Ok(Json(Any(body)), format!("public, max-age={max_age}"))
    }
}
