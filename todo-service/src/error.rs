//! The service's error type and its one mapping to problem responses.

use poem::http::StatusCode;
use shared::db::DbUnavailable;
use shared::problem::{Code, FieldCode};
use shared::ratelimit::RateLimited;
use shared::{ApiErr, ApiError, FieldError};

#[derive(Debug, thiserror::Error)]
pub enum TodoError {
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("not found")]
    NotFound,
    #[error("precondition failed")]
    PreconditionFailed,
    #[error("todo limit reached")]
    LimitReached(i64),
    #[error("idempotency key reused with another body")]
    IdempotencyMismatch,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Unavailable(#[from] DbUnavailable),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
}

impl From<FieldError> for TodoError {
    fn from(err: FieldError) -> Self {
        TodoError::Validation(vec![err])
    }
}

impl From<TodoError> for ApiError {
    fn from(err: TodoError) -> Self {
        match err {
            TodoError::Validation(errors) => ApiError::validation(errors),
            TodoError::NotFound => ApiError::not_found("No such todo."),
            TodoError::PreconditionFailed => ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                Code::PreconditionFailed,
                "The todo has changed since the version in If-Match; fetch it again.",
            ),
            TodoError::LimitReached(limit) => ApiError::new(
                StatusCode::CONFLICT,
                Code::Conflict,
                format!("An owner can have at most {limit} todos; delete some first."),
            ),
            TodoError::IdempotencyMismatch => ApiError::validation(vec![FieldError::new(
                "Idempotency-Key",
                FieldCode::ReusedWithDifferentBody,
                "this key was used with a different request body; use a new key",
            )]),
            TodoError::Conflict(detail) => {
                ApiError::new(StatusCode::CONFLICT, Code::Conflict, detail)
            }
            TodoError::RateLimited(limited) => limited.into(),
            TodoError::Unavailable(unavailable) => unavailable.into(),
            TodoError::Database(err) => match shared::db::unavailable(&err) {
                Some(unavailable) => unavailable.into(),
                None => shared::problem::internal_error("database error", &err),
            },
        }
    }
}

impl<S> From<TodoError> for ApiErr<S> {
    fn from(err: TodoError) -> Self {
        ApiError::from(err).into()
    }
}
