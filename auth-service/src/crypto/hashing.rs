//! argon2id password hashing, off the async runtime and bounded.
//!
//! At most `concurrency` hashes run at once (each on a blocking thread), and at most `queue`
//! wait for a turn; beyond that callers get [`Overloaded`] at once, which the API answers
//! with 503 and `Retry-After`. Memory stays bounded by `concurrency x memory cost`. An unknown
//! email is verified against a dummy hash with the same parameters, so it costs the same
//! time as a wrong password.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;
use tracing::Instrument;

/// The hashing queue is full.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("password hashing is at capacity")]
pub struct Overloaded;

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or an unparseable stored hash).
    No,
    /// Right password; `rehash` holds a new hash when the stored one used other parameters.
    Yes { rehash: Option<String> },
}

#[derive(Debug, Clone, Copy)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

pub struct PasswordHashing {
    argon: Argon2<'static>,
    params: HashParams,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    dummy_hash: String,
}

/// Decrements the waiting count even when the waiting request is dropped.
struct WaitGuard<'a>(&'a AtomicUsize);

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHashing {
    pub fn new(params: HashParams, concurrency: usize, queue: usize) -> anyhow::Result<Self> {
        let argon = argon2_for(params)?;
        let salt = SaltString::generate(&mut OsRng);
        let dummy_hash = argon
            .hash_password(b"dummy password for unknown accounts", &salt)
            .map_err(|e| anyhow::anyhow!("computing the dummy hash: {e}"))?
            .to_string();
        Ok(Self {
            argon,
            params,
            permits: Arc::new(Semaphore::new(concurrency)),
            waiting: AtomicUsize::new(0),
            max_waiting: queue,
            dummy_hash,
        })
    }

    /// Run `work` on a blocking thread once a hashing slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, Overloaded> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Overloaded);
                }
                let _guard = WaitGuard(&self.waiting);
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|_| Overloaded)?
            }
        };
        let argon = self.argon.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            let out = work(&argon);
            drop(permit);
            out
        })
        .in_current_span()
        .await
        .map_err(|_| Overloaded)
    }

    /// Hash a new password.
    pub async fn hash(&self, password: String) -> Result<String, Overloaded> {
        self.run(move |argon| {
            let salt = SaltString::generate(&mut OsRng);
            argon
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .expect("argon2 hashing with validated parameters cannot fail")
        })
        .await
    }

    /// Check `password` against `stored`, or against the dummy hash when there is no account,
    /// so both paths cost one full verification.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<Verified, Overloaded> {
        let exists = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let params = self.params;
        self.run(move |argon| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verified::No;
            };
            if argon.verify_password(password.as_bytes(), &parsed).is_err() || !exists {
                return Verified::No;
            }
            let rehash = if needs_rehash(&parsed, params) {
                let salt = SaltString::generate(&mut OsRng);
                argon
                    .hash_password(password.as_bytes(), &salt)
                    .ok()
                    .map(|h| h.to_string())
            } else {
                None
            };
            Verified::Yes { rehash }
        })
        .await
    }
}

fn argon2_for(p: HashParams) -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
        .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// A stored hash made with another algorithm, version or cost is replaced on login.
fn needs_rehash(parsed: &PasswordHash<'_>, want: HashParams) -> bool {
    if parsed.algorithm != argon2::ARGON2ID_IDENT || parsed.version != Some(Version::V0x13 as u32) {
        return true;
    }
    match Params::try_from(parsed) {
        Ok(p) => {
            p.m_cost() != want.memory_kib
                || p.t_cost() != want.iterations
                || p.p_cost() != want.parallelism
        }
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashParams = HashParams {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn right_password_verifies_and_wrong_does_not() {
        let h = PasswordHashing::new(CHEAP, 2, 4).unwrap();
        let hash = h.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert_eq!(
            h.verify("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap(),
            Verified::Yes { rehash: None }
        );
        assert_eq!(
            h.verify("wrong".into(), Some(hash)).await.unwrap(),
            Verified::No
        );
    }

    #[tokio::test]
    async fn unknown_account_never_verifies() {
        let h = PasswordHashing::new(CHEAP, 1, 1).unwrap();
        let dummy = "dummy password for unknown accounts".to_string();
        assert_eq!(h.verify(dummy, None).await.unwrap(), Verified::No);
    }

    #[tokio::test]
    async fn changed_parameters_trigger_a_rehash() {
        let old = PasswordHashing::new(CHEAP, 1, 1).unwrap();
        let hash = old.hash("pw".into()).await.unwrap();
        let stronger = HashParams {
            memory_kib: 2048,
            ..CHEAP
        };
        let new = PasswordHashing::new(stronger, 1, 1).unwrap();
        match new.verify("pw".into(), Some(hash)).await.unwrap() {
            Verified::Yes { rehash: Some(h) } => assert!(h.contains("m=2048")),
            other => panic!("expected a rehash, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let h = Arc::new(PasswordHashing::new(CHEAP, 1, 0).unwrap());
        let _held = h.permits.clone().try_acquire_owned().unwrap();
        assert!(matches!(h.hash("x".into()).await, Err(Overloaded)));
    }
}
