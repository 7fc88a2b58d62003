//! Minting access tokens and refresh tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Header;
use rand::RngCore;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use shared::tokens::{ACCESS_TOKEN_TYP, AccessClaims, Audience};

use crate::crypto::keyring::Signer;

/// An opaque refresh token: 256 random bits, base64url. Only its hash is stored.
pub struct RefreshToken(pub String);

impl RefreshToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(URL_SAFE_NO_PAD.encode(bytes))
    }
}

/// SHA-256 of a presented token. A fast hash suffices: the input has 256 bits of entropy.
pub fn hash_token(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// What goes into one access token.
pub struct AccessGrant<'a> {
    pub issuer: &'a str,
    pub audiences: &'a [String],
    pub subject: String,
    pub session_id: Option<uuid::Uuid>,
    pub role: &'a str,
    pub scope: String,
    pub client_id: Option<String>,
    pub email_verified: Option<bool>,
    pub amr: Option<Vec<String>>,
    pub ttl_secs: i64,
}

/// Sign an access token (RFC 9068 shape). Returns the token and its `jti`.
pub fn sign_access_token(
    signer: &Signer,
    grant: AccessGrant<'_>,
) -> anyhow::Result<(String, String)> {
    let now = chrono::Utc::now().timestamp();
    let jti = uuid::Uuid::now_v7().to_string();
    let claims = AccessClaims {
        iss: grant.issuer.to_owned(),
        aud: Audience::Many(grant.audiences.to_vec()),
        sub: grant.subject,
        exp: now + grant.ttl_secs,
        iat: now,
        nbf: Some(now),
        jti: jti.clone(),
        sid: grant.session_id.map(|s| s.to_string()),
        role: grant.role.to_owned(),
        scope: grant.scope,
        client_id: grant.client_id,
        email_verified: grant.email_verified,
        amr: grant.amr,
    };
    let mut header = Header::new(signer.alg.jwt());
    header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
    header.kid = Some(signer.kid.clone());
    let token = jsonwebtoken::encode(&header, &claims, &signer.key)?;
    Ok((token, jti))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_tokens_are_long_random_and_distinct() {
        let a = RefreshToken::generate().0;
        let b = RefreshToken::generate().0;
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(hash_token(&a).len(), 32);
        assert_ne!(hash_token(&a), hash_token(&b));
    }
}
