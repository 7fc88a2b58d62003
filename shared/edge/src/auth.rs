//! Bearer authentication at the HTTP edge: the OpenAPI security scheme, and the
//! authenticator a service plugs in (verification, then whatever it checks besides).

use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use shared_token::tokens::{AccessClaims, Principal};
use shared_token::verify::{BoxFuture, Verifier};

use crate::problem::ApiError;

/// Turns a bearer token into a [`Principal`]: verification plus whatever revocation check
/// the service does. Installed as request data; [`BearerAuth`] calls it.
pub trait Authenticator: Send + Sync {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, ApiError>>;
}

/// An OAuth 2 bearer access token (RFC 6750), verified.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let Some(authn) = req.data::<Arc<dyn Authenticator>>() else {
        tracing::error!("no Authenticator installed");
        return Err(ApiError::internal().into());
    };
    Ok(authn.authenticate(&bearer.token).await?)
}

/// Verification for services that trust the auth service's tokens without calling it:
/// signature and claims with the published keys, then the local denylist.
pub struct TokenAuthenticator {
    pub verifier: Verifier,
    pub denylist: Arc<shared_token::denylist_feed::Denylist>,
}

impl TokenAuthenticator {
    /// The whole check, as [`Authenticator::authenticate`] runs it (benchmarks call this).
    pub async fn check(&self, token: &str) -> Result<AccessClaims, ApiError> {
        use shared_token::denylist_feed::DenyError;
        let claims = self.verifier.verify(token).await.map_err(|err| {
            tracing::info!(reason = ?err, "access token refused");
            ApiError::from(err)
        })?;
        match self.denylist.check(&claims) {
            Ok(()) => Ok(claims),
            Err(DenyError::Revoked) => {
                tracing::info!(jti = %claims.jti, "revoked access token refused");
                Err(ApiError::token_revoked())
            }
            Err(DenyError::Unavailable) => Err(ApiError::unavailable(
                "Token revocations cannot be checked right now; try again shortly.",
            )
            .with_retry_after(1)),
        }
    }
}

impl Authenticator for TokenAuthenticator {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Principal, ApiError>> {
        Box::pin(async move { self.check(token).await.map(|c| Principal::from_claims(&c)) })
    }
}
