//! The errors of the OAuth endpoints (RFC 6749 §5.2): a code and a description. Which
//! status each answers with is the api's business (`api::oauth`).

/// The `error` codes of RFC 6749 §5.2 this service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    UnsupportedGrantType,
}

impl OAuthCode {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthCode::InvalidRequest => "invalid_request",
            OAuthCode::InvalidClient => "invalid_client",
            OAuthCode::InvalidGrant => "invalid_grant",
            OAuthCode::InvalidScope => "invalid_scope",
            OAuthCode::UnsupportedGrantType => "unsupported_grant_type",
        }
    }
}

/// An RFC 6749 §5.2 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub error: OAuthCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(error: OAuthCode, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }
}
