//! Access-token verification, the same for every service that accepts our tokens.
//!
//! The rules, in order: the token is a compact JWS of sane size; the header has `typ:
//! at+jwt`, an allowed asymmetric `alg`, a `kid` we know (whose key is of that very `alg`),
//! no `jku`/`x5u`/`jwk`/`x5c` (never acted on: refused) and no `crit`; the signature holds;
//! every required claim is present (`sid` too, for a user's or admin's token); `iss` is exact; our audience is in `aud`; `nbf` and `iat`
//! are not in the future beyond the leeway. Only a token that passes all of that and whose
//! one fault is an `exp` in the past (beyond the leeway) is *expired*; everything else is
//! *invalid*, with the reason for the log, never for the caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};

use crate::tokens::{ACCESS_TOKEN_TYP, AccessClaims, Role};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The largest clock leeway any verifier may be configured with. Revocations stay on the
/// denylist, and retired keys stay published, until a token's `exp` plus this: so no
/// verifier, whatever its own leeway within the bound, still accepts a token whose
/// revocation or key is already gone. One value, shared by the writer and every verifier.
pub const MAX_LEEWAY_SECS: i64 = 300;

/// How many verified tokens a service remembers ([`Verifier::with_cache`]): about half a
/// kilobyte each, so a few megabytes; a replica with more active tokens than this only
/// verifies some of them in full more often.
pub const REMEMBERED_TOKENS: usize = 10_000;

/// Tokens longer than this are refused before any parsing.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// A public key able to check signatures of one algorithm.
pub struct VerifyingKey {
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// Where verifiers find keys by `kid`.
pub trait KeySource: Send + Sync {
    /// The key for `kid`, or `None` when it is unknown (after any refetch the source allows).
    fn key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Option<Arc<VerifyingKey>>>;
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// Everything about it is fine except that it is past `exp`.
    Expired,
    /// Anything else; the reason is for the log only.
    Invalid(String),
}

impl TokenError {
    fn invalid(reason: impl Into<String>) -> Self {
        TokenError::Invalid(reason.into())
    }
}

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    /// Clock leeway for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: i64,
}

pub struct Verifier {
    config: VerifierConfig,
    keys: Arc<dyn KeySource>,
    verified: Option<quick_cache::sync::Cache<[u8; 32], Arc<Verified>>>,
    hits: AtomicU64,
}

/// A token whose signature and fixed claims checked out, kept by the SHA-256 of the whole
/// token (looked up only after its header passed). What depends on the time (`nbf`, `iat`,
/// `exp`) is checked again on every use, and an entry counts only while the token's `kid`
/// still gives the very key it was verified with: a refetched, replaced or removed key
/// means a full check again.
struct Verified {
    claims: AccessClaims,
    key: Arc<VerifyingKey>,
}

impl Verifier {
    pub fn new(config: VerifierConfig, keys: Arc<dyn KeySource>) -> Self {
        Self {
            config,
            keys,
            verified: None,
            hits: AtomicU64::new(0),
        }
    }

    /// Remember up to `capacity` verified tokens, so that a token presented again (a client
    /// sends the same one until it expires) skips the signature check, which is most of the
    /// cost of verifying (about 90 µs for EdDSA here). The result is the same as without.
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.verified = (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity));
        self
    }

    /// Verify form, header, signature and claims. Does not consult any denylist.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        self.verify_at(token, chrono::Utc::now().timestamp()).await
    }

    pub async fn verify_at(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        self.verify_with_grace(token, now, 0).await
    }

    /// Like [`Self::verify`], also accepting a token expired within the largest leeway any
    /// verifier may allow ([`MAX_LEEWAY_SECS`]): what revocation needs, since some verifier
    /// may still accept such a token.
    pub async fn verify_still_accepted_anywhere(
        &self,
        token: &str,
    ) -> Result<AccessClaims, TokenError> {
        let now = chrono::Utc::now().timestamp();
        self.verify_with_grace(token, now, MAX_LEEWAY_SECS).await
    }

    async fn verify_with_grace(
        &self,
        token: &str,
        now: i64,
        exp_grace: i64,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::invalid("token too long"));
        }
        let (kid, alg) = self.check_header(token)?;
        let key = self
            .keys
            .key(&kid)
            .await
            .ok_or_else(|| TokenError::invalid("unknown kid"))?;
        if key.alg != alg {
            return Err(TokenError::invalid("alg does not match the key's"));
        }
        let Some(cache) = &self.verified else {
            let claims = self.check_signature_and_claims(token, &key, alg)?;
            self.check_times(&claims, now, exp_grace)?;
            return Ok(claims);
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = cache.get(&digest) {
            if Arc::ptr_eq(&hit.key, &key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                self.check_times(&hit.claims, now, exp_grace)?;
                return Ok(hit.claims.clone());
            }
            // Verified with a key the kid no longer gives (refetched or replaced).
            cache.remove(&digest);
        }
        let claims = self.check_signature_and_claims(token, &key, alg)?;
        self.check_times(&claims, now, exp_grace)?;
        cache.insert(
            digest,
            Arc::new(Verified {
                claims: claims.clone(),
                key,
            }),
        );
        Ok(claims)
    }

    /// How many verifications a remembered token answered (for tests and curiosity).
    pub fn remembered_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The header's rules; its `kid` and `alg`.
    fn check_header(&self, token: &str) -> Result<(String, Algorithm), TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| TokenError::invalid(format!("malformed header: {e}")))?;
        let typ_ok = header.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        });
        if !typ_ok {
            return Err(TokenError::invalid(format!(
                "typ {:?} is not at+jwt",
                header.typ
            )));
        }
        if !self.config.algorithms.contains(&header.alg) {
            return Err(TokenError::invalid(format!(
                "alg {:?} not allowed",
                header.alg
            )));
        }
        if header.jku.is_some()
            || header.x5u.is_some()
            || header.jwk.is_some()
            || header.x5c.is_some()
        {
            return Err(TokenError::invalid(
                "header carries key material or key URLs",
            ));
        }
        if header.crit.is_some() {
            return Err(TokenError::invalid("unsupported crit header"));
        }
        let kid = header.kid.ok_or_else(|| TokenError::invalid("no kid"))?;
        Ok((kid, header.alg))
    }

    /// The signature under `key`, and the claims that do not depend on the time.
    fn check_signature_and_claims(
        &self,
        token: &str,
        key: &VerifyingKey,
        alg: Algorithm,
    ) -> Result<AccessClaims, TokenError> {
        // jsonwebtoken checks the signature (and that the alg is the key's); the claims we
        // check ourselves, so that expiry is judged last.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<AccessClaims>(token, &key.key, &validation)
            .map_err(|e| TokenError::invalid(format!("signature or claims: {e}")))?;
        let claims = data.claims;

        if claims.iss != self.config.issuer {
            return Err(TokenError::invalid("wrong iss"));
        }
        if !claims.aud.contains(&self.config.audience) {
            return Err(TokenError::invalid("aud does not name us"));
        }
        if claims.sub.is_empty() || claims.jti.is_empty() {
            return Err(TokenError::invalid("empty sub or jti"));
        }
        // A user's token always names its session: without one, no revocation by session
        // (logout, password change, ...) could ever reach it. Only a service has none.
        let user_token = matches!(claims.role.parse(), Ok(Role::User | Role::Admin));
        if user_token && claims.sid.as_deref().is_none_or(str::is_empty) {
            return Err(TokenError::invalid("a user token without sid"));
        }
        if claims.exp < claims.iat {
            return Err(TokenError::invalid("exp before iat"));
        }
        Ok(claims)
    }

    /// `nbf` and `iat` not in the future beyond the leeway; then `exp` (within the leeway,
    /// or `exp_grace` if larger), judged last.
    fn check_times(
        &self,
        claims: &AccessClaims,
        now: i64,
        exp_grace: i64,
    ) -> Result<(), TokenError> {
        let leeway = self.config.leeway_secs;
        if claims.nbf.is_some_and(|nbf| nbf > now + leeway) {
            return Err(TokenError::invalid("not yet valid (nbf)"));
        }
        if claims.iat > now + leeway {
            return Err(TokenError::invalid("issued in the future (iat)"));
        }
        if claims.exp + leeway.max(exp_grace) < now {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}
