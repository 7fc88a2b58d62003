//! Verification keys fetched from the auth service's JWKS.
//!
//! Keys are cached for as long as the JWKS's `Cache-Control: max-age` says (bounded to
//! 10 s..1 h) and refreshed in the background; when a fetch fails the cached keys keep
//! working. A token with an unknown `kid` triggers a refetch, but at most one per
//! `min_refetch_interval`, so a flood of made-up `kid`s cannot amplify into a flood of
//! fetches. Only keys of allowed asymmetric algorithms are kept.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use tokio::sync::Mutex;

use crate::verify::{BoxFuture, KeySource, VerifyingKey};

const MIN_MAX_AGE: Duration = Duration::from_secs(10);
const MAX_MAX_AGE: Duration = Duration::from_secs(3600);

pub struct JwksKeySource {
    url: String,
    client: reqwest::Client,
    allowed: Vec<Algorithm>,
    min_refetch_interval: Duration,
    keys: RwLock<Arc<HashMap<String, Arc<VerifyingKey>>>>,
    /// When the last fetch (of any kind) ended, for the unknown-kid throttle; held while
    /// fetching.
    last_fetch: Mutex<Option<Instant>>,
    fetches: std::sync::atomic::AtomicU64,
}

impl JwksKeySource {
    pub fn new(url: String, allowed: Vec<Algorithm>, min_refetch_interval: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .expect("a reqwest client with timeouts builds");
        Self {
            url,
            client,
            allowed,
            min_refetch_interval,
            keys: RwLock::new(Arc::new(HashMap::new())),
            last_fetch: Mutex::new(None),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many fetches were attempted (for tests and metrics).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether any key is loaded.
    pub fn has_keys(&self) -> bool {
        !self.current().is_empty()
    }

    fn current(&self) -> Arc<HashMap<String, Arc<VerifyingKey>>> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fetch now; returns the max-age the response allows.
    pub async fn fetch(&self) -> anyhow::Result<Duration> {
        let mut last = self.last_fetch.lock().await;
        let fetched = self.fetch_unlocked().await;
        *last = Some(Instant::now());
        fetched
    }

    /// The fetch itself; callers hold `last_fetch`, so fetches never overlap.
    async fn fetch_unlocked(&self) -> anyhow::Result<Duration> {
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let resp = self
            .client
            .get(&self.url)
            .send()
            .await?
            .error_for_status()?;
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age)
            .unwrap_or(Duration::from_secs(300))
            .clamp(MIN_MAX_AGE, MAX_MAX_AGE);
        let set: JwkSet = resp.json().await?;
        let keys: HashMap<String, Arc<VerifyingKey>> =
            set.keys.iter().filter_map(|jwk| self.accept(jwk)).collect();
        tracing::debug!(
            keys = keys.len(),
            max_age_secs = max_age.as_secs(),
            "fetched the JWKS"
        );
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(max_age)
    }

    fn accept(&self, jwk: &Jwk) -> Option<(String, Arc<VerifyingKey>)> {
        let kid = jwk.common.key_id.clone()?;
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let alg: Algorithm = jwk.common.key_algorithm?.to_string().parse().ok()?;
        if !self.allowed.contains(&alg) {
            return None;
        }
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).ok()?;
        Some((kid, Arc::new(VerifyingKey { alg, key })))
    }

    /// Refetch because of an unknown kid, unless a fetch ended within the interval. The
    /// check, the fetch and its time are one step under one lock (which every fetch holds):
    /// requests queued on it meanwhile find the interval running and the fresh keys, so a
    /// burst of made-up `kid`s costs at most one fetch, and none while one is under way.
    async fn refetch_throttled(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refetch_interval) {
            return;
        }
        if let Err(err) = self.fetch_unlocked().await {
            tracing::warn!(error = %err, "refetching the JWKS failed");
        }
        *last = Some(Instant::now());
    }

    /// One run of the background job: fetch, and answer when to fetch again (as the JWKS
    /// allows, or in 5 s after a failure).
    pub async fn refresh_logged(&self) -> Duration {
        match self.fetch().await {
            Ok(max_age) => max_age,
            Err(err) => {
                tracing::warn!(error = %err, "fetching the JWKS failed; cached keys stay in use");
                Duration::from_secs(5)
            }
        }
    }
}

impl KeySource for JwksKeySource {
    fn key<'a>(&'a self, kid: &'a str) -> BoxFuture<'a, Option<Arc<VerifyingKey>>> {
        Box::pin(async move {
            if let Some(key) = self.current().get(kid) {
                return Some(key.clone());
            }
            self.refetch_throttled().await;
            self.current().get(kid).cloned()
        })
    }
}

fn parse_max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (k, v) = directive.trim().split_once('=')?;
        k.eq_ignore_ascii_case("max-age")
            .then(|| v.trim().parse().ok().map(Duration::from_secs))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWKS endpoint that answers an empty set after `delay`.
    async fn slow_jwks(delay: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 2048];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let body = r#"{"keys":[]}"#;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(resp.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/jwks.json")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unknown_kids_in_flight_together_cost_one_fetch() {
        let url = slow_jwks(Duration::from_millis(200)).await;
        let source = Arc::new(JwksKeySource::new(
            url,
            vec![Algorithm::EdDSA],
            Duration::from_millis(50),
        ));
        // A slow fetch is under way, past the interval since it started, when a burst of
        // made-up kids arrives.
        let slow = tokio::spawn({
            let source = source.clone();
            async move { source.fetch().await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let lookups: Vec<_> = (0..32)
            .map(|i| {
                let source = source.clone();
                tokio::spawn(async move { source.key(&format!("made-up-{i}")).await.is_none() })
            })
            .collect();
        for lookup in lookups {
            assert!(lookup.await.unwrap());
        }
        slow.await.unwrap();
        assert_eq!(
            source.fetch_count(),
            1,
            "the fetch under way serves them all"
        );
    }

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parse_max_age("max-age=5, public"),
            Some(Duration::from_secs(5))
        );
        assert_eq!(parse_max_age("no-store"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }
}
