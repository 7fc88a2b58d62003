//! What the OAuth endpoints read and answer: the form, RFC 6749 token and error bodies,
//! RFC 7662 introspection, and the response of each endpoint.

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::Deserialize;

use crate::service::oauth::OAuthError;

/// The parameters of the OAuth endpoints (RFC 6749, 7009, 7662). Unknown parameters are
/// ignored, as RFC 6749 requires.
#[derive(Debug, Deserialize, Object)]
pub struct OAuthRequest {
    /// `client_credentials` or `refresh_token` (token endpoint).
    pub grant_type: Option<String>,
    /// Space-separated scopes to request (client credentials); default: all the client's.
    pub scope: Option<String>,
    /// Client authentication in the body (else HTTP Basic).
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    /// For `grant_type=refresh_token`.
    pub refresh_token: Option<String>,
    /// The token to revoke or introspect.
    pub token: Option<String>,
    /// `access_token` or `refresh_token` (a hint only).
    pub token_type_hint: Option<String>,
}

/// A token response (RFC 6749 §5.1).
#[derive(Debug, Object)]
pub struct OAuthToken {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    /// Only for the refresh-token grant.
    #[oai(skip_serializing_if_is_none)]
    pub refresh_token: Option<String>,
}

/// An error response (RFC 6749 §5.2).
#[derive(Debug, Object)]
pub struct OAuthErrorBody {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `unauthorized_client`,
    /// `unsupported_grant_type` or `invalid_scope`.
    pub error: String,
    pub error_description: String,
}

/// Introspection (RFC 7662). Inactive tokens give only `{"active": false}`.
#[derive(Debug, Default, Object)]
pub struct IntrospectionBody {
    pub active: bool,
    #[oai(skip_serializing_if_is_none)]
    pub scope: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub client_id: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub sub: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub exp: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub iat: Option<i64>,
    #[oai(skip_serializing_if_is_none)]
    pub jti: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub iss: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub token_type: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub role: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    pub sid: Option<String>,
}

pub const NO_STORE: &str = "no-store";
const BASIC_CHALLENGE: &str = r#"Basic realm="auth-service", charset="UTF-8""#;

#[derive(ApiResponse)]
pub enum TokenResponse {
    /// A token.
    #[oai(status = 200)]
    Ok(Json<OAuthToken>, #[oai(header = "Cache-Control")] String),
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`, `invalid_scope`, ...
    #[oai(status = 400)]
    BadRequest(
        Json<OAuthErrorBody>,
        #[oai(header = "Cache-Control")] String,
    ),
    /// `invalid_client`, with a Basic challenge.
    #[oai(status = 401)]
    Unauthorized(
        Json<OAuthErrorBody>,
        #[oai(header = "WWW-Authenticate")] String,
        #[oai(header = "Cache-Control")] String,
    ),
}

#[derive(ApiResponse)]
pub enum RevokeResponse {
    /// Revoked, or there was nothing to revoke (RFC 7009 answers 200 either way).
    #[oai(status = 200)]
    Ok,
    /// `invalid_request`: the form lacks `token` or is malformed.
    #[oai(status = 400)]
    BadRequest(Json<OAuthErrorBody>),
    /// `invalid_client`, with a Basic challenge.
    #[oai(status = 401)]
    Unauthorized(
        Json<OAuthErrorBody>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
}

#[derive(ApiResponse)]
pub enum IntrospectResponse {
    /// What the token is; `{"active": false}` for anything not usable.
    #[oai(status = 200)]
    Ok(
        Json<IntrospectionBody>,
        #[oai(header = "Cache-Control")] String,
    ),
    /// `invalid_request`: the form lacks `token` or is malformed.
    #[oai(status = 400)]
    BadRequest(Json<OAuthErrorBody>),
    /// `invalid_client`, with a Basic challenge.
    #[oai(status = 401)]
    Unauthorized(
        Json<OAuthErrorBody>,
        #[oai(header = "WWW-Authenticate")] String,
    ),
}

/// What the OAuth routes answer besides their RFC 6749 bodies. Their 400 is the RFC 6749
/// error body, documented by each success type.
pub struct OAuthServiceErrors;

impl shared::problem::ErrorSet for OAuthServiceErrors {
    const STATUSES: &'static [u16] = &[413, 429];
    const DOCUMENTED_BY_SUCCESS: &'static [u16] = &[400];
}

pub fn body(err: &OAuthError) -> Json<OAuthErrorBody> {
    Json(OAuthErrorBody {
        error: err.error.as_str().to_owned(),
        error_description: err.description.clone(),
    })
}

impl TokenResponse {
    pub fn unauthorized(err: &OAuthError) -> Self {
        Self::Unauthorized(body(err), BASIC_CHALLENGE.into(), NO_STORE.into())
    }
    pub fn bad_request(err: &OAuthError) -> Self {
        Self::BadRequest(body(err), NO_STORE.into())
    }
}

impl RevokeResponse {
    pub fn unauthorized(err: &OAuthError) -> Self {
        Self::Unauthorized(body(err), BASIC_CHALLENGE.into())
    }
    pub fn bad_request(err: &OAuthError) -> Self {
        Self::BadRequest(body(err))
    }
}

impl IntrospectResponse {
    pub fn unauthorized(err: &OAuthError) -> Self {
        Self::Unauthorized(body(err), BASIC_CHALLENGE.into())
    }
    pub fn bad_request(err: &OAuthError) -> Self {
        Self::BadRequest(body(err))
    }
}
