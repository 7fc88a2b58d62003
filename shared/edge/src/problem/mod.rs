//! RFC 9457 problem details: the one error shape every response of both services uses.
//!
//! Handlers return `Result<T, ApiErr<Set>>` where `Set` names the statuses the operation can
//! answer, so the OpenAPI document lists exactly those. Framework errors (bad JSON, unknown
//! route, body too large, ...) are turned into the same shape by [`crate::middleware`].

mod code;
mod docs;

pub use code::{Code, FieldCode};
pub use docs::{ApiErr, ErrorSet};

use poem::http::{HeaderValue, StatusCode, header};
use poem::{IntoResponse, Response};
use poem_openapi::Object;
use serde::Serialize;

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The `WWW-Authenticate` value on every 401 (RFC 6750).
pub const BEARER_CHALLENGE: &str = r#"Bearer error="invalid_token""#;

tokio::task_local! {
    /// The id of the request being served, set by the edge middleware so that error bodies
    /// built deep in a handler carry it too.
    pub static REQUEST_ID: String;
}

/// The id of the current request, or an empty string outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

/// A problem with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Object)]
pub struct FieldError {
    /// The field, as named in the request body (`password`, `title`).
    pub field: String,
    /// A stable UPPER_SNAKE word (`TOO_SHORT`, `INVALID_FORMAT`, `COMMON_PASSWORD`).
    pub code: String,
    /// What is wrong, for humans.
    pub message: String,
}

impl FieldError {
    pub fn new(field: &str, code: FieldCode, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, Object)]
#[oai(example)]
pub struct Problem {
    /// Always `about:blank`: the status and `code` carry the meaning.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// The HTTP status phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for humans. Never a stack trace, SQL or secret.
    pub detail: String,
    /// A stable UPPER_SNAKE word a client can switch on.
    pub code: String,
    /// The request id, also sent as `X-Request-Id`.
    pub request_id: String,
    /// Field problems, present on validation errors.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Problem {
            kind: "about:blank".into(),
            title: "Unprocessable Entity".into(),
            status: 422,
            detail: "The request has invalid fields.".into(),
            code: "VALIDATION_FAILED".into(),
            request_id: "0193b1f2-7c1e-7d3a-9a4e-1f2a3b4c5d6e".into(),
            errors: Some(vec![FieldError::new(
                "password",
                FieldCode::TooShort,
                "must be at least 8 characters",
            )]),
        }
    }
}

/// An error on its way to becoming a problem response.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub detail: String,
    pub errors: Option<Vec<FieldError>>,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
    /// Extra headers (rate-limit headers on 429, for example).
    pub headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 422 with field problems.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let mut err = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Code::ValidationFailed,
            "The request has invalid fields.",
        );
        err.errors = Some(errors);
        err
    }

    /// 400 for a body or parameter that could not be parsed at all.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::ValidationFailed, detail)
    }

    /// 401 for any token that fails on form, signature, header or claims: one body whatever
    /// the reason, so the response is no oracle. The reason belongs in the log.
    pub fn token_invalid() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Code::TokenInvalid,
            "The access token is missing or invalid.",
        )
    }

    pub fn token_expired() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Code::TokenExpired,
            "The access token has expired.",
        )
    }

    pub fn token_revoked() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            Code::TokenRevoked,
            "The access token has been revoked.",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, Code::Forbidden, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, Code::NotFound, detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::ServiceUnavailable,
            detail,
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "An internal error occurred.",
        )
    }

    pub fn to_problem(&self) -> Problem {
        Problem {
            kind: "about:blank".into(),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.as_str().to_owned(),
            request_id: current_request_id(),
            errors: self.errors.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.to_problem()).unwrap_or_default();
        let mut resp = Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, PROBLEM_JSON)
            .body(body);
        let headers = resp.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(BEARER_CHALLENGE),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        resp
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        self.clone().into_response()
    }
}

impl From<shared_infra::db::DbUnavailable> for ApiError {
    fn from(_: shared_infra::db::DbUnavailable) -> Self {
        ApiError::unavailable("The database is unavailable; try again shortly.").with_retry_after(1)
    }
}

impl From<shared_token::tokens::NotAllowed> for ApiError {
    fn from(err: shared_token::tokens::NotAllowed) -> Self {
        ApiError::forbidden(err.0)
    }
}

impl From<shared_token::verify::TokenError> for ApiError {
    fn from(err: shared_token::verify::TokenError) -> Self {
        match err {
            shared_token::verify::TokenError::Expired => ApiError::token_expired(),
            shared_token::verify::TokenError::Invalid(_) => ApiError::token_invalid(),
        }
    }
}

/// Log a 5xx once with its cause and turn it into the bare `INTERNAL` problem.
pub fn internal_error(context: &str, err: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "{context}");
    ApiError::internal()
}
