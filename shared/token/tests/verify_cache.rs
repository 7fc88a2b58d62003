//! A verifier that remembers verified tokens answers exactly as one that does not: the time
//! claims are judged on every use, a token is remembered only with the key that verified
//! it, and any other token (a changed byte) is verified in full.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rand::rngs::OsRng;
use serde_json::json;
use shared_token::verify::{
    BoxFuture, KeySource, TokenError, Verifier, VerifierConfig, VerifyingKey,
};

const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 30;

/// Keys that a test can replace or remove, as a JWKS refetch would.
#[derive(Default)]
struct Keys(RwLock<HashMap<String, Arc<VerifyingKey>>>);

impl KeySource for Keys {
    fn key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Option<Arc<VerifyingKey>>> {
        Box::pin(async move { self.0.read().unwrap().get(kid).cloned() })
    }
}

struct Signer {
    encoding: EncodingKey,
    public: Arc<VerifyingKey>,
}

fn signer() -> Signer {
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    Signer {
        encoding: EncodingKey::from_ed_der(key.to_pkcs8_der().unwrap().as_bytes()),
        public: Arc::new(VerifyingKey {
            alg: Algorithm::EdDSA,
            key: DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
        }),
    }
}

fn token(signer: &Signer, nbf: i64) -> String {
    token_with(signer, NOW, NOW + 900, nbf)
}

/// A token issued at `iat` that expires at `exp`.
fn token_at(signer: &Signer, iat: i64, exp: i64) -> String {
    token_with(signer, iat, exp, iat)
}

fn token_with(signer: &Signer, iat: i64, exp: i64, nbf: i64) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let claims = json!({
        "iss": "https://auth.example.com", "aud": ["todo-service"], "sub": "user-1",
        "exp": exp, "iat": iat, "nbf": nbf, "jti": "token-1", "sid": "session-1",
        "role": "user", "scope": "todos:read"
    });
    jsonwebtoken::encode(&header, &claims, &signer.encoding).unwrap()
}

fn verifier(keys: Arc<Keys>) -> Verifier {
    Verifier::new(
        VerifierConfig {
            issuer: "https://auth.example.com".into(),
            audience: "todo-service".into(),
            algorithms: vec![Algorithm::EdDSA],
            leeway_secs: LEEWAY,
        },
        keys,
    )
    .with_cache(16)
}

fn setup() -> (Signer, Arc<Keys>, Verifier) {
    let signer = signer();
    let keys = Arc::new(Keys::default());
    keys.0
        .write()
        .unwrap()
        .insert("k1".into(), signer.public.clone());
    let verifier = verifier(keys.clone());
    (signer, keys, verifier)
}

#[tokio::test]
async fn a_token_presented_again_is_answered_from_memory() {
    let (signer, _, verifier) = setup();
    let t = token(&signer, NOW);
    assert!(verifier.verify_at(&t, NOW).await.is_ok());
    assert_eq!(verifier.remembered_hits(), 0);
    assert!(verifier.verify_at(&t, NOW).await.is_ok());
    assert!(verifier.verify_at(&t, NOW + 5).await.is_ok());
    assert_eq!(verifier.remembered_hits(), 2);
    // Refused tokens are not remembered.
    let early = token(&signer, NOW + 600);
    assert!(verifier.verify_at(&early, NOW).await.is_err());
    assert!(verifier.verify_at(&early, NOW).await.is_err());
    assert_eq!(verifier.remembered_hits(), 2);
}

#[tokio::test]
async fn a_token_remembered_within_the_revocation_grace_is_still_expired_for_use() {
    let (signer, _, verifier) = setup();
    // Expired 100 s ago: past this verifier's leeway (30 s), within the largest any
    // verifier may allow, which revocation honours.
    let now = chrono::Utc::now().timestamp();
    let t = token_at(&signer, now - 1000, now - 100);
    assert!(verifier.verify_still_accepted_anywhere(&t).await.is_ok());
    assert_eq!(verifier.verify(&t).await, Err(TokenError::Expired));
    assert_eq!(verifier.remembered_hits(), 1);
}

#[tokio::test]
async fn a_remembered_token_is_judged_by_the_clock_on_every_use() {
    let (signer, _, verifier) = setup();
    let t = token(&signer, NOW);
    assert_eq!(verifier.verify_at(&t, NOW).await.unwrap().sub, "user-1");
    assert_eq!(verifier.verify_at(&t, NOW + 1).await.unwrap().sub, "user-1");
    // Later than exp plus the leeway: expired, though it verified a moment ago.
    assert_eq!(
        verifier.verify_at(&t, NOW + 900 + LEEWAY + 1).await,
        Err(TokenError::Expired)
    );
    // Earlier than nbf and iat less the leeway: not yet valid, remembered or not.
    assert!(matches!(
        verifier.verify_at(&t, NOW - LEEWAY - 1).await,
        Err(TokenError::Invalid(_))
    ));
    // A token refused for its time is not remembered as good.
    let early = token(&signer, NOW + 600);
    assert!(verifier.verify_at(&early, NOW).await.is_err());
    assert!(verifier.verify_at(&early, NOW).await.is_err());
    assert!(verifier.verify_at(&early, NOW + 600).await.is_ok());
}

#[tokio::test]
async fn a_remembered_token_needs_the_key_it_was_verified_with() {
    let (signer, keys, verifier) = setup();
    let t = token(&signer, NOW);
    assert!(verifier.verify_at(&t, NOW).await.is_ok());

    // The kid now names another key: the token's signature no longer holds.
    let other = self::signer();
    keys.0
        .write()
        .unwrap()
        .insert("k1".into(), other.public.clone());
    assert!(matches!(
        verifier.verify_at(&t, NOW).await,
        Err(TokenError::Invalid(_))
    ));

    // The kid is gone: unknown.
    keys.0.write().unwrap().clear();
    assert!(matches!(
        verifier.verify_at(&t, NOW).await,
        Err(TokenError::Invalid(_))
    ));

    // The same key back (a refetch builds a new entry): verified in full, and good again.
    keys.0
        .write()
        .unwrap()
        .insert("k1".into(), Arc::new(same_key(&signer)));
    assert!(verifier.verify_at(&t, NOW).await.is_ok());
}

#[tokio::test]
async fn any_other_token_is_verified_in_full() {
    let (signer, _, verifier) = setup();
    let t = token(&signer, NOW);
    assert!(verifier.verify_at(&t, NOW).await.is_ok());
    // One character of the signature changed; and the claims of another token with this
    // token's signature.
    let mut bytes = t.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let changed = String::from_utf8(bytes).unwrap();
    assert!(verifier.verify_at(&changed, NOW).await.is_err());
    let other = token(&signer, NOW - 1);
    let spliced = format!(
        "{}.{}",
        other.rsplit_once('.').unwrap().0,
        t.rsplit_once('.').unwrap().1
    );
    assert!(verifier.verify_at(&spliced, NOW).await.is_err());
}

/// The signer's public key as a new allocation, as a JWKS refetch would build it.
fn same_key(signer: &Signer) -> VerifyingKey {
    VerifyingKey {
        alg: Algorithm::EdDSA,
        key: signer.public.key.clone(),
    }
}
