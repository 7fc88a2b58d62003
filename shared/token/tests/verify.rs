//! Every rejection rule of access-token verification, with tokens signed here, each through
//! a plain verifier and one that remembers verified tokens (as the services run it), which
//! must answer alike (more on the memory in `verify_cache.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rand::rngs::OsRng;
use serde_json::{Value, json};
use shared_token::verify::{
    BoxFuture, KeySource, TokenError, Verifier, VerifierConfig, VerifyingKey,
};

const ISS: &str = "https://auth.example.com";
const AUD: &str = "todo-service";
const NOW: i64 = 1_800_000_000;

struct Keys(HashMap<String, Arc<VerifyingKey>>);

impl KeySource for Keys {
    fn key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Option<Arc<VerifyingKey>>> {
        Box::pin(async move { self.0.get(kid).cloned() })
    }
}

struct Fixture {
    verifier: Verifier,
    remembering: Verifier,
    ed: EncodingKey,
    ec: EncodingKey,
}

fn fixture() -> Fixture {
    let ed = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let ec = p256::SecretKey::random(&mut OsRng);
    let ed_der = ed.to_pkcs8_der().unwrap();
    let ec_der = {
        use p256::pkcs8::EncodePrivateKey;
        ec.to_pkcs8_der().unwrap()
    };
    let ec_pub = {
        use p256::pkcs8::EncodePublicKey;
        ec.public_key().to_public_key_der().unwrap()
    };
    let mut keys = HashMap::new();
    keys.insert(
        "ed".to_owned(),
        Arc::new(VerifyingKey {
            alg: Algorithm::EdDSA,
            key: DecodingKey::from_ed_der(ed.verifying_key().as_bytes()),
        }),
    );
    keys.insert(
        "ec".to_owned(),
        Arc::new(VerifyingKey {
            alg: Algorithm::ES256,
            key: DecodingKey::from_ec_der(&ec_pub_point(&ec_pub)),
        }),
    );
    let keys: Arc<Keys> = Arc::new(Keys(keys));
    let config = VerifierConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        algorithms: vec![Algorithm::EdDSA, Algorithm::ES256],
        leeway_secs: 30,
    };
    let verifier = Verifier::new(config.clone(), keys.clone());
    let remembering = Verifier::new(config, keys).with_cache(64);
    Fixture {
        verifier,
        remembering,
        ed: EncodingKey::from_ed_der(ed_der.as_bytes()),
        ec: EncodingKey::from_ec_der(ec_der.as_bytes()),
    }
}

/// jsonwebtoken wants the SEC1 point for EC public keys, not the SPKI document.
fn ec_pub_point(spki: &p256::pkcs8::Document) -> Vec<u8> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePublicKey;
    p256::PublicKey::from_public_key_der(spki.as_bytes())
        .unwrap()
        .to_encoded_point(false)
        .as_bytes()
        .to_vec()
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": [AUD, "other"], "sub": "user-1", "exp": NOW + 900, "iat": NOW,
        "nbf": NOW, "jti": "token-1", "sid": "session-1", "role": "user",
        "scope": "todos:read todos:write"
    })
}

fn header(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.typ = Some("at+jwt".into());
    h.kid = Some(kid.into());
    h
}

fn sign(f: &Fixture, header: &Header, claims: &Value) -> String {
    let key = if header.alg == Algorithm::ES256 {
        &f.ec
    } else {
        &f.ed
    };
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn ed_token(f: &Fixture, claims: &Value) -> String {
    sign(f, &header(Algorithm::EdDSA, "ed"), claims)
}

async fn verify(
    f: &Fixture,
    token: &str,
) -> Result<shared_token::tokens::AccessClaims, TokenError> {
    let plain = f.verifier.verify_at(token, NOW).await;
    // Twice through the remembering verifier: a remembered answer is the same answer.
    for _ in 0..2 {
        assert_eq!(f.remembering.verify_at(token, NOW).await, plain, "{token}");
    }
    plain
}

fn invalid(result: Result<shared_token::tokens::AccessClaims, TokenError>) -> String {
    match result {
        Err(TokenError::Invalid(reason)) => reason,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn a_good_token_verifies_with_either_algorithm() {
    let f = fixture();
    let c = verify(&f, &ed_token(&f, &claims())).await.unwrap();
    assert_eq!(c.sub, "user-1");
    let ec = sign(&f, &header(Algorithm::ES256, "ec"), &claims());
    assert!(verify(&f, &ec).await.is_ok());
}

#[tokio::test]
async fn malformed_tokens_are_invalid() {
    let f = fixture();
    for token in ["", "abc", "a.b", "a.b.c", "....", &"x".repeat(9000)] {
        invalid(verify(&f, token).await);
    }
    let good = ed_token(&f, &claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    parts[1] = "!!notbase64!!";
    invalid(verify(&f, &parts.join(".")).await);
}

#[tokio::test]
async fn typ_must_be_at_jwt() {
    let f = fixture();
    for typ in [None, Some("JWT"), Some("at+jwe")] {
        let mut h = header(Algorithm::EdDSA, "ed");
        h.typ = typ.map(Into::into);
        assert!(invalid(verify(&f, &sign(&f, &h, &claims())).await).contains("typ"));
    }
    let mut h = header(Algorithm::EdDSA, "ed");
    h.typ = Some("application/at+jwt".into());
    assert!(verify(&f, &sign(&f, &h, &claims())).await.is_ok());
}

#[tokio::test]
async fn only_configured_algorithms_are_accepted() {
    let f = fixture();
    // HS256 signed with the public key bytes: the classic confusion attack.
    let h = header(Algorithm::HS256, "ed");
    let token = jsonwebtoken::encode(
        &h,
        &claims(),
        &EncodingKey::from_secret(b"public key bytes"),
    )
    .unwrap();
    assert!(invalid(verify(&f, &token).await).contains("alg"));
    // alg none.
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": "ed"});
    let unsigned = format!("{}.{}.", b64(&none_header), b64(&claims()));
    invalid(verify(&f, &unsigned).await);
}

#[tokio::test]
async fn the_key_must_be_of_the_header_algorithm() {
    let f = fixture();
    // An ES256 header pointing at the EdDSA key.
    let token = sign(&f, &header(Algorithm::ES256, "ed"), &claims());
    assert!(invalid(verify(&f, &token).await).contains("alg"));
}

#[tokio::test]
async fn key_material_and_key_urls_in_the_header_are_refused() {
    let f = fixture();
    let base = ed_token(&f, &claims());
    let parts: Vec<&str> = base.split('.').collect();
    for (name, value) in [
        ("jku", json!("https://evil.example.com/jwks.json")),
        ("x5u", json!("https://evil.example.com/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("jwk", json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA"})),
        ("crit", json!(["exp"])),
    ] {
        let mut h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "ed"});
        h[name] = value;
        let token = format!("{}.{}.{}", b64(&h), parts[1], parts[2]);
        invalid(verify(&f, &token).await);
    }
}

#[tokio::test]
async fn kid_must_name_a_known_key() {
    let f = fixture();
    let mut h = header(Algorithm::EdDSA, "ed");
    h.kid = None;
    assert!(invalid(verify(&f, &sign(&f, &h, &claims())).await).contains("kid"));
    let token = sign(&f, &header(Algorithm::EdDSA, "unknown"), &claims());
    assert!(invalid(verify(&f, &token).await).contains("kid"));
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature() {
    let f = fixture();
    let good = ed_token(&f, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims();
    forged["role"] = json!("admin");
    let token = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
    invalid(verify(&f, &token).await);
}

#[tokio::test]
async fn every_required_claim_must_be_present() {
    let f = fixture();
    for claim in ["iss", "aud", "sub", "exp", "iat", "jti", "role", "scope"] {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(claim);
        invalid(verify(&f, &ed_token(&f, &c)).await);
    }
}

#[tokio::test]
async fn a_users_token_must_name_its_session_and_only_a_service_may_not() {
    let f = fixture();
    for role in ["user", "admin"] {
        for sid in [None, Some(json!("")), Some(json!(null))] {
            let mut c = claims();
            c["role"] = json!(role);
            match sid {
                Some(sid) => c["sid"] = sid,
                None => {
                    c.as_object_mut().unwrap().remove("sid");
                }
            }
            assert!(invalid(verify(&f, &ed_token(&f, &c)).await).contains("sid"));
        }
    }
    let mut c = claims();
    c["role"] = json!("service");
    c.as_object_mut().unwrap().remove("sid");
    assert!(verify(&f, &ed_token(&f, &c)).await.is_ok());
}

#[tokio::test]
async fn issuer_and_audience_must_match() {
    let f = fixture();
    for (claim, value) in [
        ("iss", json!("https://auth.example.com/")),
        ("iss", json!("https://evil.example.com")),
        ("aud", json!("other")),
        ("aud", json!(["other", "more"])),
    ] {
        let mut c = claims();
        c[claim] = value;
        invalid(verify(&f, &ed_token(&f, &c)).await);
    }
    let mut c = claims();
    c["aud"] = json!(AUD);
    assert!(
        verify(&f, &ed_token(&f, &c)).await.is_ok(),
        "aud may be a string"
    );
}

#[tokio::test]
async fn nbf_and_iat_in_the_future_beyond_the_leeway_are_invalid() {
    let f = fixture();
    let mut c = claims();
    c["nbf"] = json!(NOW + 31);
    assert!(invalid(verify(&f, &ed_token(&f, &c)).await).contains("nbf"));
    c["nbf"] = json!(NOW + 29);
    assert!(
        verify(&f, &ed_token(&f, &c)).await.is_ok(),
        "within the leeway"
    );
    let mut c = claims();
    c["iat"] = json!(NOW + 31);
    assert!(invalid(verify(&f, &ed_token(&f, &c)).await).contains("iat"));
}

#[tokio::test]
async fn only_a_token_whose_one_fault_is_exp_is_expired() {
    let f = fixture();
    let mut c = claims();
    c["iat"] = json!(NOW - 2000);
    c["nbf"] = json!(NOW - 2000);
    c["exp"] = json!(NOW - 31);
    assert_eq!(
        verify(&f, &ed_token(&f, &c)).await.unwrap_err(),
        TokenError::Expired
    );
    c["exp"] = json!(NOW - 29);
    assert!(
        verify(&f, &ed_token(&f, &c)).await.is_ok(),
        "within the leeway"
    );

    // Expired and wrong audience: invalid, not expired.
    c["exp"] = json!(NOW - 100);
    c["aud"] = json!("other");
    invalid(verify(&f, &ed_token(&f, &c)).await);
    // Expired and badly signed: invalid.
    c["aud"] = json!(AUD);
    let token = ed_token(&f, &c);
    let tampered = format!("{}x", &token[..token.len() - 1]);
    invalid(verify(&f, &tampered).await);
}
