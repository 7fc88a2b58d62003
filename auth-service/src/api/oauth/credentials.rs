//! Client authentication as a request carries it: HTTP Basic (RFC 6749 §2.3.1, each part
//! form-urlencoded) or `client_id` and `client_secret` in the form, never both.

use base64::Engine;
use poem::Request;
use poem::http::header;

use super::OAuthRequest;
use crate::service::oauth::{ClientCredentials, OAuthCode, OAuthError};

fn authorization(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: each part
/// form-urlencoded) or the form; never both.
pub fn credentials(req: &Request, params: &OAuthRequest) -> Result<ClientCredentials, OAuthError> {
    let authorization = authorization(req);
    let form = match (&params.client_id, &params.client_secret) {
        (Some(id), Some(secret)) => Some(ClientCredentials {
            id: id.clone(),
            secret: secret.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(OAuthError::new(
                OAuthCode::InvalidClient,
                "Send both client_id and client_secret.",
            ));
        }
    };
    let basic = authorization
        .and_then(basic_credentials)
        .map(|encoded| {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    OAuthError::new(OAuthCode::InvalidClient, "Malformed Basic credentials.")
                })?;
            let (id, secret) = raw.split_once(':').ok_or_else(|| {
                OAuthError::new(OAuthCode::InvalidClient, "Malformed Basic credentials.")
            })?;
            Ok::<_, OAuthError>(ClientCredentials {
                id: form_decode(id),
                secret: form_decode(secret),
            })
        })
        .transpose()?;
    match (basic, form) {
        (Some(_), Some(_)) => Err(OAuthError::new(
            OAuthCode::InvalidRequest,
            "Use one client authentication method, not both.",
        )),
        (Some(c), None) | (None, Some(c)) => Ok(c),
        (None, None) => Err(OAuthError::new(
            OAuthCode::InvalidClient,
            "Client authentication is required.",
        )),
    }
}

/// The encoded part of an `Authorization: Basic` header.
fn basic_credentials(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Basic ")
        .or_else(|| authorization.strip_prefix("basic "))
}

/// Whether the caller authenticates as a client at all: Basic credentials or a
/// `client_secret` (a public client sends neither).
pub fn sends_client_credentials(req: &Request, params: &OAuthRequest) -> bool {
    authorization(req).and_then(basic_credentials).is_some() || params.client_secret.is_some()
}

fn form_decode(s: &str) -> String {
    form_urlencoded::parse(format!("v={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
