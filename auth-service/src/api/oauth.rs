//! `/oauth/*`: the OAuth 2 token, revocation and introspection endpoints. Requests are
//! `application/x-www-form-urlencoded`; errors are RFC 6749 §5.2 bodies
//! `{"error","error_description"}`, so that any OAuth client library understands them.

use std::sync::Arc;

use poem::Request;
use poem::http::header;
use poem_openapi::payload::{Form, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use shared::problem::ApiErr;

use crate::api::ApiTags;
use crate::service::RequestMeta;
use crate::service::oauth::{self, Failure, Introspection, OAuthError, Params};
use crate::state::AppState;

pub struct OAuthApi {
    pub state: Arc<AppState>,
}

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

impl OAuthRequest {
    /// The parameters the service reads (`token_type_hint` is only a hint: unused).
    fn into_params(self) -> Params {
        Params {
            grant_type: self.grant_type,
            scope: self.scope,
            client_id: self.client_id,
            client_secret: self.client_secret,
            refresh_token: self.refresh_token,
            token: self.token,
        }
    }
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

const NO_STORE: &str = "no-store";
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

fn body(err: &OAuthError) -> Json<OAuthErrorBody> {
    Json(OAuthErrorBody {
        error: err.error.to_owned(),
        error_description: err.description.clone(),
    })
}

fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// An OAuth failure as (status-specific) response, or a service fault as a problem.
macro_rules! oauth_failure {
    ($resp:ident, $failure:expr) => {
        match $failure {
            Failure::OAuth(err) if err.status() == 401 => $resp::unauthorized(&err),
            Failure::OAuth(err) => $resp::bad_request(&err),
            Failure::Service(err) => return Err(err.into()),
        }
    };
}

impl TokenResponse {
    fn unauthorized(err: &OAuthError) -> Self {
        Self::Unauthorized(body(err), BASIC_CHALLENGE.into(), NO_STORE.into())
    }
    fn bad_request(err: &OAuthError) -> Self {
        Self::BadRequest(body(err), NO_STORE.into())
    }
}

impl RevokeResponse {
    fn unauthorized(err: &OAuthError) -> Self {
        Self::Unauthorized(body(err), BASIC_CHALLENGE.into())
    }
    fn bad_request(err: &OAuthError) -> Self {
        Self::BadRequest(body(err))
    }
}

impl IntrospectResponse {
    fn unauthorized(err: &OAuthError) -> Self {
        Self::Unauthorized(body(err), BASIC_CHALLENGE.into())
    }
    fn bad_request(err: &OAuthError) -> Self {
        Self::BadRequest(body(err))
    }
}

#[OpenApi(prefix_path = "/oauth", tag = "ApiTags::OAuth")]
impl OAuthApi {
    /// The token endpoint (RFC 6749). `grant_type=client_credentials` with client
    /// authentication by HTTP Basic or form fields returns a service token (`role:
    /// service`, `sub` = `client_id`, no refresh token). `grant_type=refresh_token` rotates a
    /// refresh token like `/v1/auth/refresh`. There is no password grant.
    ///
    /// Rate limits (all `/oauth/*` calls): per client ip (`AUTH_RATE_TOKEN_IP`, default 120
    /// per 60 s) and per client id (`AUTH_RATE_TOKEN_CLIENT`, 60 per 60 s); failed client
    /// authentication is throttled like failed logins. Refused: 429 with `Retry-After`.
    #[oai(path = "/token", method = "post", operation_id = "oauthToken")]
    async fn token(
        &self,
        req: &Request,
        form: Form<OAuthRequest>,
    ) -> Result<TokenResponse, ApiErr<OAuthServiceErrors>> {
        let meta = RequestMeta::from_request(req);
        let params = form.0.into_params();
        let result = match params.grant_type.as_deref() {
            None | Some("") => Err(OAuthError {
                error: "invalid_request",
                description: "grant_type is required.".into(),
            }
            .into()),
            Some("client_credentials") => {
                match oauth::authenticate_client(&self.state, authorization(req), &params, &meta)
                    .await
                {
                    Ok(client) => {
                        oauth::client_credentials(
                            &self.state,
                            &client,
                            params.scope.as_deref(),
                            &meta,
                        )
                        .await
                    }
                    Err(failure) => Err(failure),
                }
            }
            Some("refresh_token") => {
                // A public client (a browser app) need not authenticate; one that sends
                // client credentials must send valid ones (RFC 6749 section 6).
                let client = if oauth::sends_client_credentials(authorization(req), &params) {
                    oauth::authenticate_client(&self.state, authorization(req), &params, &meta)
                        .await
                        .map(drop)
                } else {
                    Ok(())
                };
                match client {
                    Ok(()) => {
                        oauth::refresh(&self.state, params.refresh_token.as_deref(), &meta).await
                    }
                    Err(failure) => Err(failure),
                }
            }
            Some(other) => Err(OAuthError {
                error: "unsupported_grant_type",
                description: format!("The grant type {other:?} is not supported."),
            }
            .into()),
        };
        Ok(match result {
            Ok(issued) => TokenResponse::Ok(
                Json(OAuthToken {
                    access_token: issued.access_token,
                    token_type: "Bearer".into(),
                    expires_in: issued.expires_in,
                    scope: issued.scope,
                    refresh_token: issued.refresh_token,
                }),
                NO_STORE.into(),
            ),
            Err(failure) => oauth_failure!(TokenResponse, failure),
        })
    }

    /// Token revocation (RFC 7009), for authenticated clients: an access token's `jti` is
    /// put on the denylist; a refresh token's session is revoked. A client revokes only
    /// tokens issued to it unless it holds the scope `tokens:introspect`; any other token is
    /// answered 200 like an unknown one, with nothing revoked.
    #[oai(path = "/revoke", method = "post", operation_id = "oauthRevoke")]
    async fn revoke(
        &self,
        req: &Request,
        form: Form<OAuthRequest>,
    ) -> Result<RevokeResponse, ApiErr<OAuthServiceErrors>> {
        let meta = RequestMeta::from_request(req);
        let params = form.0.into_params();
        let client =
            match oauth::authenticate_client(&self.state, authorization(req), &params, &meta).await
            {
                Ok(client) => client,
                Err(failure) => return Ok(oauth_failure!(RevokeResponse, failure)),
            };
        let Some(token) = params.token.as_deref() else {
            return Ok(RevokeResponse::bad_request(&OAuthError {
                error: "invalid_request",
                description: "token is required.".into(),
            }));
        };
        oauth::revoke(&self.state, &client, token, &meta).await?;
        Ok(RevokeResponse::Ok)
    }

    /// Token introspection (RFC 7662), for authenticated clients. Revoked, expired and
    /// unknown tokens are `{"active": false}`, and so is any token not issued to the caller
    /// unless it holds the scope `tokens:introspect`.
    #[oai(
        path = "/introspect",
        method = "post",
        operation_id = "oauthIntrospect"
    )]
    async fn introspect(
        &self,
        req: &Request,
        form: Form<OAuthRequest>,
    ) -> Result<IntrospectResponse, ApiErr<OAuthServiceErrors>> {
        let meta = RequestMeta::from_request(req);
        let params = form.0.into_params();
        let client =
            match oauth::authenticate_client(&self.state, authorization(req), &params, &meta).await
            {
                Ok(client) => client,
                Err(failure) => return Ok(oauth_failure!(IntrospectResponse, failure)),
            };
        let Some(token) = params.token.as_deref() else {
            return Ok(IntrospectResponse::bad_request(&OAuthError {
                error: "invalid_request",
                description: "token is required.".into(),
            }));
        };
        let body = match oauth::introspect(&self.state, &client, token).await? {
            Introspection::Inactive => IntrospectionBody::default(),
            Introspection::Access(c) => IntrospectionBody {
                active: true,
                scope: Some(c.scope),
                client_id: c.client_id,
                sub: Some(c.sub),
                exp: Some(c.exp),
                iat: Some(c.iat),
                jti: Some(c.jti),
                iss: Some(c.iss),
                token_type: Some("Bearer".into()),
                role: Some(c.role),
                sid: c.sid,
            },
            Introspection::Refresh {
                user_id,
                session_id,
                issued_at,
                expires_at,
            } => IntrospectionBody {
                active: true,
                sub: Some(user_id),
                exp: Some(expires_at.timestamp()),
                iat: Some(issued_at.timestamp()),
                iss: Some(self.state.settings.auth.issuer.clone()),
                token_type: Some("refresh_token".into()),
                sid: Some(session_id),
                ..Default::default()
            },
        };
        Ok(IntrospectResponse::Ok(Json(body), NO_STORE.into()))
    }
}

/// For `/oauth/*`: a request the framework could not parse (wrong content type, ...) gets an
/// RFC 6749 `invalid_request` body instead of a problem document.
pub async fn framework_errors_as_oauth<E: poem::Endpoint>(
    ep: Arc<E>,
    req: Request,
) -> poem::Result<poem::Response> {
    use poem::IntoResponse;
    let is_oauth = req.uri().path().starts_with("/oauth/");
    match ep.call(req).await {
        Ok(resp) => Ok(resp.into_response()),
        Err(err)
            if is_oauth
                && err.downcast_ref::<shared::ApiError>().is_none()
                && matches!(err.status().as_u16(), 400 | 415) =>
        {
            let status = err.status();
            let body = serde_json::json!({
                "error": "invalid_request",
                "error_description": format!("The request could not be read: {}", status.canonical_reason().unwrap_or("bad request")),
            });
            Ok(poem::Response::builder()
                .status(poem::http::StatusCode::BAD_REQUEST)
                .content_type("application/json")
                .body(body.to_string()))
        }
        Err(err) => Err(err),
    }
}
