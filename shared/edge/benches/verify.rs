//! The cost of the full verification path (parse, header rules, key lookup, signature,
//! claims, denylist) against the bare signature check of the same token; and the same path
//! for a token presented again to a verifier that remembers verified tokens.
//!
//! Run: `cargo bench -p shared --bench verify`. Target: full <= 1.3 x bare.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::rngs::OsRng;
use serde_json::json;
use shared_edge::auth::TokenAuthenticator;
use shared_token::denylist::Revocation;
use shared_token::denylist_feed::Denylist;
use shared_token::verify::{BoxFuture, KeySource, Verifier, VerifierConfig, VerifyingKey};

struct OneKey(Arc<VerifyingKey>);

impl KeySource for OneKey {
    fn key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Option<Arc<VerifyingKey>>> {
        Box::pin(async move { (kid == "k1").then(|| self.0.clone()) })
    }
}

fn bench(c: &mut Criterion) {
    let signing = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let der = signing.to_pkcs8_der().unwrap();
    let decoding = DecodingKey::from_ed_der(signing.verifying_key().as_bytes());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({
        "iss": "https://auth.example.com", "aud": ["auth-service", "todo-service"],
        "sub": "0193b1f2-7c1e-7d3a-9a4e-1f2a3b4c5d6e", "exp": now + 3600, "iat": now, "nbf": now,
        "jti": "0193b1f2-7c1e-7d3a-9a4e-1f2a3b4c5d6f", "sid": "0193b1f2-7c1e-7d3a-9a4e-1f2a3b4c5d70",
        "role": "user", "scope": "todos:read todos:write"
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some("k1".into());
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();

    // A denylist the size of a busy hour: 10 000 revoked sessions, 1 000 users.
    let denylist = Denylist::new(Duration::from_secs(5));
    for i in 0..10_000 {
        denylist.insert(Revocation::Session(format!("session-{i}")), now + 900);
    }
    for i in 0..1_000 {
        denylist.insert(
            Revocation::User {
                user: format!("user-{i}"),
                before: now,
            },
            now + 900,
        );
    }
    denylist.mark_fresh();
    let verifier = || {
        Verifier::new(
            VerifierConfig {
                issuer: "https://auth.example.com".into(),
                audience: "todo-service".into(),
                algorithms: vec![Algorithm::EdDSA],
                leeway_secs: 30,
            },
            Arc::new(OneKey(Arc::new(VerifyingKey {
                alg: Algorithm::EdDSA,
                key: decoding.clone(),
            }))),
        )
    };
    let authenticator = TokenAuthenticator {
        verifier: verifier(),
        denylist: denylist.clone(),
    };
    // As the services run it: a token presented again is answered from memory.
    let remembering = TokenAuthenticator {
        verifier: verifier().with_cache(shared_token::verify::REMEMBERED_TOKENS),
        denylist,
    };

    let mut bare = Validation::new(Algorithm::EdDSA);
    bare.validate_exp = false;
    bare.validate_aud = false;
    bare.required_spec_claims.clear();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("verify");
    group.bench_function("bare_signature", |b| {
        b.iter(|| jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &bare).unwrap())
    });
    group.bench_function("full_path", |b| {
        b.iter(|| rt.block_on(authenticator.check(&token)).unwrap())
    });
    group.bench_function("full_path_token_remembered", |b| {
        b.iter(|| rt.block_on(remembering.check(&token)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
