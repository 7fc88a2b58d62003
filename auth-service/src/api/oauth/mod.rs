//! `/oauth/*`: the OAuth 2 token, revocation and introspection endpoints. Requests are
//! `application/x-www-form-urlencoded`; errors are RFC 6749 §5.2 bodies
//! `{"error","error_description"}`, so that any OAuth client library understands them.

use std::sync::Arc;

mod body;
mod credentials;

use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::payload::{Form, Json};
use shared::problem::ApiErr;

use crate::api::{ApiTags, request_meta};
use crate::service::oauth::{self, Failure, Introspection, OAuthCode, OAuthError};
use crate::state::AppState;
pub use body::*;
use credentials::{credentials, sends_client_credentials};

pub struct OAuthApi {
    pub state: Arc<AppState>,
}

/// An OAuth failure as its response (`invalid_client` is 401 with a Basic challenge, every
/// other code 400), or a service fault as a problem.
macro_rules! oauth_failure {
    ($resp:ident, $failure:expr) => {
        match $failure {
            Failure::OAuth(err) if err.error == OAuthCode::InvalidClient => {
                $resp::unauthorized(&err)
            }
            Failure::OAuth(err) => $resp::bad_request(&err),
            Failure::Service(err) => return Err(err.into()),
        }
    };
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
        let meta = request_meta(req);
        let params = form.0;
        let result = match params.grant_type.as_deref() {
            None | Some("") => Err(OAuthError {
                error: OAuthCode::InvalidRequest,
                description: "grant_type is required.".into(),
            }
            .into()),
            Some("client_credentials") => {
                match oauth::authenticate_client(&self.state, credentials(req, &params), &meta)
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
                let client = if sends_client_credentials(req, &params) {
                    oauth::authenticate_client(&self.state, credentials(req, &params), &meta)
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
                error: OAuthCode::UnsupportedGrantType,
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
        let meta = request_meta(req);
        let params = form.0;
        let client =
            match oauth::authenticate_client(&self.state, credentials(req, &params), &meta).await {
                Ok(client) => client,
                Err(failure) => return Ok(oauth_failure!(RevokeResponse, failure)),
            };
        let Some(token) = params.token.as_deref() else {
            return Ok(RevokeResponse::bad_request(&OAuthError {
                error: OAuthCode::InvalidRequest,
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
        let meta = request_meta(req);
        let params = form.0;
        let client =
            match oauth::authenticate_client(&self.state, credentials(req, &params), &meta).await {
                Ok(client) => client,
                Err(failure) => return Ok(oauth_failure!(IntrospectResponse, failure)),
            };
        let Some(token) = params.token.as_deref() else {
            return Ok(IntrospectResponse::bad_request(&OAuthError {
                error: OAuthCode::InvalidRequest,
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
                "error": OAuthCode::InvalidRequest.as_str(),
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
