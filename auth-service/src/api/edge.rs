//! What the auth service adds at its HTTP edge: bearer tokens checked against live
//! sessions, and empty cookie-only POSTs read as JSON.

use std::sync::Arc;

use poem::http::header;
use poem::{Endpoint, IntoResponse, Request, Response};
use shared::ApiError;
use shared::tokens::Principal;
use shared::verify::{Authenticator, BoxFuture};

use crate::service::auth;
use crate::state::AppState;

/// An empty POST or DELETE without a content type is treated as an empty JSON body, so a
/// browser can call refresh and logout with only the cookie, and remove a passkey with no
/// body.
pub async fn empty_post_is_json<E: Endpoint>(
    ep: std::sync::Arc<E>,
    mut req: Request,
) -> poem::Result<Response> {
    let method = req.method();
    if (method == poem::http::Method::POST || method == poem::http::Method::DELETE)
        && !req.headers().contains_key(header::CONTENT_TYPE)
    {
        let body = req.take_body().into_bytes().await.unwrap_or_default();
        if body.is_empty() {
            req.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
        }
        req.set_body(body);
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Bearer tokens at the auth service: a valid signature and claims, a session that is still
/// live in PostgreSQL and no revocation of the token's `jti` (PostgreSQL is the source of
/// truth, so revocation here is immediate).
pub struct SessionAuthenticator {
    pub state: Arc<AppState>,
}

impl Authenticator for SessionAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, ApiError>> {
        Box::pin(async move {
            let claims = self.state.verifier.verify(token).await.map_err(|err| {
                tracing::info!(reason = ?err, "access token refused");
                ApiError::from(err)
            })?;
            let principal = Principal::from_claims(&claims);
            let (Some(user_id), Some(sid)) = (principal.user_id(), principal.session_id) else {
                // Service tokens carry no session; nothing here accepts them yet.
                return Err(ApiError::forbidden("This needs a user's token."));
            };
            let live = auth::access_token_is_live(&self.state, sid, user_id, &claims.jti).await?;
            if !live {
                tracing::info!(session_id = %sid, "access token of a revoked session or jti refused");
                return Err(ApiError::token_revoked());
            }
            Ok(principal)
        })
    }
}
