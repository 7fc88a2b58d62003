//! The service's error type and its one mapping to problem responses.

use poem::http::StatusCode;
use shared::db::DbUnavailable;
use shared::problem::Code;
use shared::ratelimit::RateLimited;
use shared::tokens::NotAllowed;
use shared::{ApiErr, ApiError, FieldError};

use crate::crypto::hashing::Overloaded;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid fields")]
    Validation(Vec<FieldError>),
    #[error("email taken")]
    EmailTaken,
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("refresh token invalid")]
    RefreshInvalid,
    #[error("refresh token reused")]
    RefreshReused,
    #[error("reset token invalid")]
    ResetTokenInvalid,
    #[error("verification token invalid")]
    VerifyTokenInvalid,
    #[error("email not verified")]
    EmailNotVerified,
    #[error("second-factor code invalid")]
    MfaCodeInvalid,
    #[error("origin not allowed for cookie use")]
    CsrfFailed,
    #[error("not found")]
    NotFound,
    #[error("password hashing overloaded")]
    Overloaded,
    #[error(transparent)]
    NotAllowed(#[from] NotAllowed),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    RateLimited(#[from] RateLimited),
    #[error(transparent)]
    Unavailable(#[from] DbUnavailable),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<Overloaded> for AuthError {
    fn from(_: Overloaded) -> Self {
        AuthError::Overloaded
    }
}

impl From<FieldError> for AuthError {
    fn from(err: FieldError) -> Self {
        AuthError::Validation(vec![err])
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Validation(errors) => ApiError::validation(errors),
            AuthError::EmailTaken => ApiError::new(
                StatusCode::CONFLICT,
                Code::EmailTaken,
                "An account with this email already exists.",
            ),
            AuthError::InvalidCredentials => ApiError::new(
                StatusCode::UNAUTHORIZED,
                Code::InvalidCredentials,
                "The email or password is wrong.",
            ),
            AuthError::RefreshInvalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                Code::RefreshTokenInvalid,
                "The refresh token is invalid, expired or revoked.",
            ),
            AuthError::RefreshReused => ApiError::new(
                StatusCode::UNAUTHORIZED,
                Code::RefreshTokenReused,
                "The refresh token was already used; the session has been revoked.",
            ),
            AuthError::ResetTokenInvalid => ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::ResetTokenInvalid,
                "The reset link is invalid, used, expired or replaced by a newer one.",
            ),
            AuthError::VerifyTokenInvalid => ApiError::new(
                StatusCode::BAD_REQUEST,
                Code::VerifyTokenInvalid,
                "The verification link is invalid, used or expired.",
            ),
            AuthError::EmailNotVerified => ApiError::new(
                StatusCode::FORBIDDEN,
                Code::EmailNotVerified,
                "Verify your email address first: follow the link in the mail we sent.",
            ),
            AuthError::MfaCodeInvalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                Code::MfaCodeInvalid,
                "The code is wrong or used, or the login challenge expired or ran out of tries (then log in again).",
            ),
            AuthError::CsrfFailed => ApiError::new(
                StatusCode::FORBIDDEN,
                Code::CsrfFailed,
                "The refresh cookie may only be used from an allowed origin.",
            ),
            AuthError::NotFound => ApiError::not_found("No such resource."),
            AuthError::Overloaded => {
                ApiError::unavailable("The service is busy; try again shortly.").with_retry_after(1)
            }
            AuthError::NotAllowed(err) => err.into(),
            AuthError::Conflict(detail) => {
                ApiError::new(StatusCode::CONFLICT, Code::Conflict, detail)
            }
            AuthError::RateLimited(limited) => limited.into(),
            AuthError::Unavailable(unavailable) => unavailable.into(),
            AuthError::Database(err) => match shared::db::unavailable(&err) {
                Some(unavailable) => unavailable.into(),
                None => shared::problem::internal_error("database error", &err),
            },
            AuthError::Internal(err) => {
                shared::problem::internal_error("internal error", &format!("{err:#}"))
            }
        }
    }
}

impl<S> From<AuthError> for ApiErr<S> {
    fn from(err: AuthError) -> Self {
        ApiError::from(err).into()
    }
}
