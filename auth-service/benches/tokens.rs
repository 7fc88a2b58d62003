//! The auth service's hot paths besides hashing passwords: minting an access token with
//! each signing algorithm, and making and hashing a refresh token.
//!
//! Run: `cargo bench -p auth-service --bench tokens` (or `deploy/dev bench --micro`).

use auth_service::config::SigningAlg;
use auth_service::crypto::keyring::Signer;
use auth_service::crypto::keys;
use auth_service::crypto::tokens::{AccessGrant, RefreshToken, hash_token, sign_access_token};
use criterion::{Criterion, criterion_group, criterion_main};

fn signer(alg: SigningAlg) -> Signer {
    let generated = keys::generate(alg).expect("a key");
    Signer {
        kid: generated.kid,
        alg,
        key: keys::encoding_key(alg, &generated.private_der),
        activates_at: chrono::Utc::now(),
    }
}

fn bench(c: &mut Criterion) {
    let audiences = vec!["auth-service".to_owned(), "todo-service".to_owned()];
    let mut mint = c.benchmark_group("mint_access_token");
    for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
        let signer = signer(alg);
        mint.bench_function(alg.as_str(), |b| {
            b.iter(|| {
                sign_access_token(
                    &signer,
                    AccessGrant {
                        issuer: "https://auth.example.com",
                        audiences: &audiences,
                        subject: "0193b1f2-7c1e-7d3a-9a4e-1f2a3b4c5d6e".into(),
                        session_id: Some(uuid::Uuid::now_v7()),
                        role: "user",
                        scope: "todos:read todos:write".into(),
                        client_id: None,
                        email_verified: None,
                        amr: None,
                        ttl_secs: 900,
                    },
                )
                .expect("signed")
            })
        });
    }
    mint.finish();

    let mut refresh = c.benchmark_group("refresh_token");
    refresh.bench_function("generate", |b| b.iter(RefreshToken::generate));
    let token = RefreshToken::generate().0;
    refresh.bench_function("hash", |b| b.iter(|| hash_token(&token)));
    refresh.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
