//! The keys this replica signs and verifies with, loaded from PostgreSQL and refreshed in
//! the background, so that keys rotated by `auth-service rotate-keys` (or another replica)
//! are picked up without a restart.
//!
//! Lifecycle: a key is published from the moment it is stored; it signs from its
//! `activates_at` until the next key activates; it stays published for the access-token
//! lifetime (plus leeway) after that, so every token it signed can still be verified.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde_json::json;
use shared::db::PgPool;
use shared::verify::{BoxFuture, KeySource, VerifyingKey};
use tokio::sync::Mutex;

use crate::config::SigningAlg;
use crate::crypto::keys::{self, KeyCipher};
use crate::store::keys::{self as store, KeyRow, NewKey};

/// A key able to sign, from `activates_at` on.
pub struct Signer {
    pub kid: String,
    pub alg: SigningAlg,
    pub key: jsonwebtoken::EncodingKey,
    pub activates_at: DateTime<Utc>,
}

#[derive(Default)]
struct Ring {
    /// Oldest activation first.
    signers: Vec<Arc<Signer>>,
    public: HashMap<String, Arc<VerifyingKey>>,
    jwks: Arc<serde_json::Value>,
}

pub struct KeyRing {
    ring: RwLock<Arc<Ring>>,
    cipher: KeyCipher,
    /// How long a retired key stays published: access-token lifetime plus leeway.
    retention: chrono::Duration,
    pool: PgPool,
    reload_lock: Mutex<std::time::Instant>,
}

impl KeyRing {
    pub fn new(pool: PgPool, cipher: KeyCipher, retention: chrono::Duration) -> Self {
        Self {
            ring: RwLock::new(Arc::new(Ring::default())),
            cipher,
            retention,
            pool,
            reload_lock: Mutex::new(std::time::Instant::now() - Duration::from_secs(60)),
        }
    }

    /// Make sure a key exists (creating one that signs at once on the very first start),
    /// then load.
    pub async fn bootstrap(
        &self,
        conn: &mut AsyncPgConnection,
        alg: SigningAlg,
    ) -> anyhow::Result<()> {
        let key = SealedKey::generate(&self.cipher, alg).await?;
        let inserted = store::insert_if_none(conn, key.row(Utc::now())).await?;
        let generated = key.generated;
        if inserted {
            tracing::info!(kid = %generated.kid, alg = alg.as_str(), "created the first signing key");
        }
        self.load(conn).await
    }

    /// Reload every key from the database.
    pub async fn load(&self, conn: &mut AsyncPgConnection) -> anyhow::Result<()> {
        let rows = store::load_all(conn).await?;
        let ring = self.build(rows, Utc::now())?;
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        Ok(())
    }

    fn build(&self, rows: Vec<KeyRow>, now: DateTime<Utc>) -> anyhow::Result<Ring> {
        let mut ring = Ring::default();
        let mut published = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let Some(alg) = SigningAlg::parse(&row.alg) else {
                tracing::warn!(kid = %row.kid, alg = %row.alg, "skipping a key of unknown algorithm");
                continue;
            };
            let superseded = rows[i + 1..]
                .iter()
                .map(|r| r.activates_at)
                .find(|at| *at <= now);
            let retired = match (row.retired_at, superseded) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if retired.is_some_and(|at| at + self.retention <= now) {
                continue;
            }
            if retired.is_none_or(|at| at > now) {
                let der = self.cipher.open(&row.kid, &row.private_key)?;
                ring.signers.push(Arc::new(Signer {
                    kid: row.kid.clone(),
                    alg,
                    key: keys::encoding_key(alg, &der),
                    activates_at: row.activates_at,
                }));
            }
            let key = keys::decoding_key(&row.public_jwk)?;
            ring.public.insert(
                row.kid.clone(),
                Arc::new(VerifyingKey {
                    alg: alg.jwt(),
                    key,
                }),
            );
            published.push(row.public_jwk.clone());
        }
        published.reverse();
        ring.jwks = Arc::new(json!({ "keys": published }));
        Ok(ring)
    }

    fn current(&self) -> Arc<Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key to sign with now: the most recently activated one.
    pub fn signer(&self) -> Option<Arc<Signer>> {
        let now = Utc::now();
        self.current()
            .signers
            .iter()
            .rev()
            .find(|s| s.activates_at <= now)
            .cloned()
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Arc<serde_json::Value> {
        self.current().jwks.clone()
    }

    /// Reload now, unless another reload happened within the last second (so a flood of
    /// unknown `kid`s cannot turn into a flood of queries).
    pub async fn reload_throttled(&self) {
        let mut last = self.reload_lock.lock().await;
        if last.elapsed() < Duration::from_secs(1) {
            return;
        }
        *last = std::time::Instant::now();
        match self.pool.get().await {
            Ok(mut conn) => {
                if let Err(err) = self.load(&mut conn).await {
                    tracing::warn!(error = %err, "reloading signing keys failed");
                }
            }
            Err(err) => tracing::warn!(error = %err, "reloading signing keys: no connection"),
        }
    }
}

impl KeySource for KeyRing {
    fn key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Option<Arc<VerifyingKey>>> {
        Box::pin(async move {
            if let Some(key) = self.current().public.get(kid) {
                return Some(key.clone());
            }
            self.reload_throttled().await;
            self.current().public.get(kid).cloned()
        })
    }
}

/// A new key pair whose private half is sealed for storage.
struct SealedKey {
    generated: keys::GeneratedKey,
    alg: SigningAlg,
    sealed: Vec<u8>,
}

impl SealedKey {
    async fn generate(cipher: &KeyCipher, alg: SigningAlg) -> anyhow::Result<Self> {
        let generated = tokio::task::spawn_blocking(move || keys::generate(alg)).await??;
        let sealed = cipher.seal(&generated.kid, &generated.private_der)?;
        Ok(Self {
            generated,
            alg,
            sealed,
        })
    }

    /// Its row, signing from `activates_at`.
    fn row(&self, activates_at: DateTime<Utc>) -> NewKey<'_> {
        NewKey {
            kid: &self.generated.kid,
            alg: self.alg.as_str(),
            private_key: &self.sealed,
            public_jwk: &self.generated.public_jwk,
            activates_at,
        }
    }
}

/// `rotate-keys`: store a new key that is published now and signs after `lead`, and drop
/// keys that are no longer published. Returns the new kid.
pub async fn rotate(
    conn: &mut AsyncPgConnection,
    cipher: &KeyCipher,
    alg: SigningAlg,
    lead: chrono::Duration,
    retention: chrono::Duration,
) -> anyhow::Result<(String, DateTime<Utc>)> {
    let key = SealedKey::generate(cipher, alg).await?;
    // The database's clock, which every replica reads the key from, not this host's.
    let activates_at = store::now(conn).await? + lead;
    store::insert(conn, key.row(activates_at)).await?;
    let generated = key.generated;
    // Keys superseded longer ago than the retention are of no use to anyone.
    let rows = store::load_all(conn).await?;
    let now = Utc::now();
    let expired: Vec<String> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            rows[i + 1..]
                .iter()
                .any(|next| next.activates_at + retention <= now)
        })
        .map(|(_, r)| r.kid.clone())
        .collect();
    if !expired.is_empty() {
        store::delete(conn, &expired).await?;
    }
    Ok((generated.kid, activates_at))
}
