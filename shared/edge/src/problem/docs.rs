//! How problem responses appear in the OpenAPI documents: each operation lists exactly the
//! statuses its [`ErrorSet`] names, each with the problem body and its headers.

use std::marker::PhantomData;

use poem::IntoResponse;
use poem::Response;
use poem_openapi::ApiResponse;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;

use super::{ApiError, PROBLEM_JSON, Problem};

/// The statuses an operation can answer with a problem body, for its OpenAPI entry.
pub trait ErrorSet {
    const STATUSES: &'static [u16];
    /// Statuses every operation may answer (400, 500, 503) that the operation's success
    /// type documents itself, with another body; left out here so each status is named once.
    const DOCUMENTED_BY_SUCCESS: &'static [u16] = &[];
}

/// Declares an [`ErrorSet`]: `error_set!(pub SignupErrors: 409, 422);`. Every set also
/// documents 400, 500 and 503, which any operation can answer.
#[macro_export]
macro_rules! error_set {
    ($vis:vis $name:ident: $($status:literal),* $(,)?) => {
        $vis struct $name;
        impl $crate::problem::ErrorSet for $name {
            const STATUSES: &'static [u16] = &[$($status),*];
        }
    };
}

/// An error response documented with the statuses of `S`.
pub struct ApiErr<S>(pub ApiError, PhantomData<S>);

impl<S> From<ApiError> for ApiErr<S> {
    fn from(err: ApiError) -> Self {
        Self(err, PhantomData)
    }
}

impl<S> From<shared_token::tokens::NotAllowed> for ApiErr<S> {
    fn from(err: shared_token::tokens::NotAllowed) -> Self {
        ApiError::from(err).into()
    }
}

impl<S> std::fmt::Debug for ApiErr<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: Send> IntoResponse for ApiErr<S> {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<S> From<ApiErr<S>> for poem::Error {
    fn from(err: ApiErr<S>) -> Self {
        poem::Error::from(err.0)
    }
}

/// Statuses every operation may answer, whatever its own set says.
const ALWAYS: &[u16] = &[400, 500, 503];

fn describe(status: u16) -> &'static str {
    match status {
        400 => {
            "The body is not valid JSON (`VALIDATION_FAILED`); or, where the operation takes one, the mailed token is unknown, spent or expired (`RESET_TOKEN_INVALID`, `VERIFY_TOKEN_INVALID`)."
        }
        401 => {
            "Not authenticated: the bearer token is missing or invalid (`TOKEN_INVALID`), expired (`TOKEN_EXPIRED`) or revoked (`TOKEN_REVOKED`); or, where the operation takes them, wrong credentials (`INVALID_CREDENTIALS`) an unusable refresh token (`REFRESH_TOKEN_INVALID`, `REFRESH_TOKEN_REUSED`), or a wrong second-factor code or spent login challenge (`MFA_CODE_INVALID`)."
        }
        403 => {
            "Not allowed: the caller lacks the role or scope this needs (`FORBIDDEN`), a cookie-carried request came from an origin not in the allowlist (`CSRF_FAILED`), or, where configured, the login's email address is not verified yet (`EMAIL_NOT_VERIFIED`)."
        }
        404 => "No such resource, or not the caller's (`NOT_FOUND`).",
        409 => "Conflicts with the current state (`CONFLICT`, or `EMAIL_TAKEN` at signup).",
        412 => "`If-Match` does not match the current version (`PRECONDITION_FAILED`).",
        413 => "The body is larger than the configured limit (`PAYLOAD_TOO_LARGE`).",
        415 => "The body is not `application/json` (`UNSUPPORTED_MEDIA_TYPE`).",
        422 => {
            "A field, parameter or header is missing or invalid (`VALIDATION_FAILED`); `errors` names each one with a code such as `REQUIRED`, `UNKNOWN_FIELD`, `INVALID_TYPE`, `INVALID_VALUE`, `INVALID_FORMAT` or `TOO_SHORT`."
        }
        429 => "Too many requests; retry after `Retry-After` seconds (`RATE_LIMITED`).",
        500 => "An internal error (`INTERNAL`); the body carries no detail.",
        503 => "A dependency is down or the service is overloaded (`SERVICE_UNAVAILABLE`).",
        _ => "An error.",
    }
}

impl<S: ErrorSet + Send> ApiResponse for ApiErr<S> {
    fn meta() -> MetaResponses {
        let mut statuses: Vec<u16> = S::STATUSES
            .iter()
            .chain(
                ALWAYS
                    .iter()
                    .filter(|s| !S::DOCUMENTED_BY_SUCCESS.contains(s)),
            )
            .copied()
            .collect();
        statuses.sort_unstable();
        statuses.dedup();
        let responses = statuses
            .into_iter()
            .map(|status| {
                let mut headers = Vec::new();
                if status == 401 {
                    headers.push(MetaHeader {
                        name: "WWW-Authenticate".into(),
                        description: Some("`Bearer error=\"invalid_token\"`".into()),
                        required: true,
                        deprecated: false,
                        schema: String::schema_ref(),
                    });
                }
                if status == 429 || status == 503 {
                    headers.push(MetaHeader {
                        name: "Retry-After".into(),
                        description: Some("Seconds to wait before retrying.".into()),
                        required: status == 429,
                        deprecated: false,
                        schema: u64::schema_ref(),
                    });
                }
                if status == 429 {
                    for (name, description) in [
                        (
                            "RateLimit-Policy",
                            "The limits that apply, e.g. `\"login-ip\";q=30;w=60`.",
                        ),
                        (
                            "RateLimit",
                            "What is left of each, e.g. `\"login-ip\";r=0;t=2`.",
                        ),
                    ] {
                        headers.push(MetaHeader {
                            name: name.into(),
                            description: Some(description.into()),
                            required: true,
                            deprecated: false,
                            schema: String::schema_ref(),
                        });
                    }
                }
                MetaResponse {
                    description: describe(status),
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: PROBLEM_JSON,
                        schema: Problem::schema_ref(),
                    }],
                    headers,
                }
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}
