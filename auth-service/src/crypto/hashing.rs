//! argon2id password hashing, off the async runtime and bounded.
//!
//! At most `concurrency` hashes run at once (each on a blocking thread), and at most `queue`
//! wait for a turn; beyond that callers get [`Overloaded`] at once, which the API answers
//! with 503 and `Retry-After`. Memory stays bounded by `concurrency x memory cost`. An unknown
//! email is verified against a dummy hash with the same parameters, so it costs the same
//! time as a wrong password.
//!
//! Each running hash needs `memory cost` of working memory. Allocating (and zeroing) 19 MiB
//! per login costs about a sixth of the hash itself, so the buffers are kept and reused:
//! at most `concurrency` of them exist, allocated on first use. argon2 writes every block
//! in its first pass before reading it, so a reused buffer gives the same result as a fresh
//! one. After two or more passes every block depends on the whole first pass, so what a
//! kept buffer holds is no cheaper to test a guess against than the stored hash. After a
//! single pass the early blocks are cheap functions of the password, so a one-pass hash
//! wipes its buffer before it is put back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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
    engine: Arc<Engine>,
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
        let engine = Engine::new(params)?;
        let dummy_hash = engine
            .hash(b"dummy password for unknown accounts")
            .map_err(|e| anyhow::anyhow!("computing the dummy hash: {e}"))?;
        Ok(Self {
            engine: Arc::new(engine),
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
        work: impl FnOnce(&Engine) -> T + Send + 'static,
    ) -> Result<T, Overloaded> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    metrics::counter!("hash_refusals_total").increment(1);
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
        let engine = self.engine.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _enter = span.enter();
            let out = work(&engine);
            drop(permit);
            out
        })
        .in_current_span()
        .await
        .map_err(|_| Overloaded)
    }

    /// Requests waiting for a hashing slot now (the queue's depth).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Hash a new password.
    pub async fn hash(&self, password: String) -> Result<String, Overloaded> {
        self.run(move |engine| {
            engine
                .hash(password.as_bytes())
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
        self.run(move |engine| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Verified::No;
            };
            if !engine.verify(password.as_bytes(), &parsed) || !exists {
                return Verified::No;
            }
            let rehash = if needs_rehash(&parsed, params) {
                engine.hash(password.as_bytes()).ok()
            } else {
                None
            };
            Verified::Yes { rehash }
        })
        .await
    }
}

/// argon2id through the `argon2` crate, with working memory kept between calls.
pub struct Engine {
    params: Params,
    /// Idle buffers of `params.block_count()` blocks. Only hashes holding a permit take
    /// one, so there are never more than `concurrency`.
    idle: Mutex<Vec<Vec<Block>>>,
}

impl Engine {
    pub fn new(p: HashParams) -> anyhow::Result<Self> {
        let params = Params::new(p.memory_kib, p.iterations, p.parallelism, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
        Ok(Self {
            params,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A PHC string for `password` with a fresh salt and the configured parameters.
    pub fn hash(&self, password: &[u8]) -> argon2::password_hash::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let hash = self.compute(
            password,
            Algorithm::Argon2id,
            Version::V0x13,
            self.params.clone(),
            salt.as_salt(),
        )?;
        Ok(hash.to_string())
    }

    /// Whether `password` matches `stored`, computed with the stored hash's own algorithm,
    /// version and parameters, and compared in constant time (`Output`'s equality).
    pub fn verify(&self, password: &[u8], stored: &PasswordHash<'_>) -> bool {
        let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
            return false;
        };
        let (Ok(algorithm), Ok(version), Ok(params)) = (
            Algorithm::try_from(stored.algorithm),
            stored
                .version
                .map_or(Ok(Version::default()), Version::try_from),
            Params::try_from(stored),
        ) else {
            return false;
        };
        self.compute(password, algorithm, version, params, salt)
            .ok()
            .and_then(|computed| computed.hash)
            .is_some_and(|computed| computed == expected)
    }

    /// What `argon2`'s `PasswordHasher::hash_password` does, with a kept buffer.
    fn compute<'a>(
        &self,
        password: &[u8],
        algorithm: Algorithm,
        version: Version,
        params: Params,
        salt: Salt<'a>,
    ) -> argon2::password_hash::Result<PasswordHash<'a>> {
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_buf)?;
        let argon = Argon2::new(algorithm, version, params.clone());
        let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let output = Output::init_with(output_len, |out| {
            self.with_memory(params.block_count(), |memory| {
                let result =
                    argon.hash_password_into_with_memory(password, salt_bytes, out, &mut *memory);
                if params.t_cost() < 2 {
                    memory.fill(Block::default());
                }
                result
            })
            .map_err(Into::into)
        })?;
        Ok(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }

    /// Run `f` on at least `blocks` blocks of working memory: a kept buffer when the
    /// configured cost suffices, else (a stored hash with a higher cost) a one-off one.
    fn with_memory<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let size = self.params.block_count();
        if blocks > size {
            return f(&mut vec![Block::default(); blocks]);
        }
        let taken = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let mut buffer = taken.unwrap_or_else(|| vec![Block::default(); size]);
        let out = f(&mut buffer[..blocks]);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(buffer);
        }
        out
    }
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

    #[test]
    fn kept_buffers_agree_with_the_argon2_crate_both_ways() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let engine = Engine::new(CHEAP).unwrap();
        let stock = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(CHEAP.memory_kib, CHEAP.iterations, CHEAP.parallelism, None).unwrap(),
        );
        // Several rounds, so later ones run on a buffer full of an earlier hash.
        for round in 0..4 {
            let password = format!("password number {round}");
            let ours = engine.hash(password.as_bytes()).unwrap();
            let ours = PasswordHash::new(&ours).unwrap();
            assert!(stock.verify_password(password.as_bytes(), &ours).is_ok());
            let salt = SaltString::generate(&mut OsRng);
            let theirs = stock.hash_password(password.as_bytes(), &salt).unwrap();
            assert!(engine.verify(password.as_bytes(), &theirs));
            assert!(!engine.verify(b"another password", &theirs));
        }
        assert_eq!(engine.idle.lock().unwrap().len(), 1, "one buffer, reused");
    }

    #[test]
    fn a_one_pass_hash_leaves_no_password_state_in_its_kept_buffer() {
        let engine = Engine::new(CHEAP).unwrap();
        assert_eq!(CHEAP.iterations, 1);
        engine.hash(b"correct horse").unwrap();
        let idle = engine.idle.lock().unwrap();
        let words = idle[0].iter().flat_map(|block| block.as_ref().iter());
        assert!(words.copied().all(|w| w == 0));
    }

    #[test]
    fn a_stored_hash_with_a_higher_cost_still_verifies() {
        use argon2::password_hash::PasswordHasher;
        let engine = Engine::new(CHEAP).unwrap();
        let stronger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 2, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let stored = stronger.hash_password(b"pw", &salt).unwrap();
        assert!(engine.verify(b"pw", &stored));
        assert!(!engine.verify(b"pW", &stored));
    }

    #[tokio::test]
    async fn full_queue_is_refused_at_once() {
        let h = Arc::new(PasswordHashing::new(CHEAP, 1, 0).unwrap());
        let _held = h.permits.clone().try_acquire_owned().unwrap();
        assert!(matches!(h.hash("x".into()).await, Err(Overloaded)));
    }
}
