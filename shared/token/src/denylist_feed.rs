//! A verifier's local copy of the revocation denylist, kept current from Redis.
//!
//! Checking a token costs no network round trip: the view lives in memory. A background
//! task subscribes to the revocations channel, then loads the whole set (so nothing published
//! in between is missed), applies every message, and once a second pings Redis and checks the
//! `synced` marker. While the connection is down, or Redis has lost its data (the marker is
//! missing until the auth service has replayed its durable record), the view may be missing
//! revocations: it is *stale*. Once it has been stale for longer than `max_staleness`,
//! [`Denylist::check`] answers [`DenyError::Unavailable`] (the API's 503) instead of
//! accepting tokens that might be revoked. Entries already known are kept across reconnects,
//! so a Redis restart never forgets a revocation this process has seen.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::denylist::{DenylistKeys, DenylistView, Revocation, parse_message};
use crate::tokens::AccessClaims;

/// Why a token may not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyError {
    Revoked,
    /// The local view may be missing revocations (Redis unreachable for too long).
    Unavailable,
}

/// `stale_since` value meaning "fresh".
const FRESH: i64 = -1;
/// `stale_since` value meaning "never synced".
const NEVER: i64 = i64::MIN;

pub struct Denylist {
    view: RwLock<DenylistView>,
    base: Instant,
    /// Milliseconds after `base` when the view became stale, or [`FRESH`]/[`NEVER`].
    stale_since: AtomicI64,
    max_staleness: Duration,
}

impl Denylist {
    pub fn new(max_staleness: Duration) -> Arc<Self> {
        Arc::new(Self {
            view: RwLock::new(DenylistView::default()),
            base: Instant::now(),
            stale_since: AtomicI64::new(NEVER),
            max_staleness,
        })
    }

    fn now_ms(&self) -> i64 {
        self.base.elapsed().as_millis() as i64
    }

    /// Whether verified `claims` may be used.
    pub fn check(&self, claims: &AccessClaims) -> Result<(), DenyError> {
        if self
            .view
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_revoked(claims)
        {
            return Err(DenyError::Revoked);
        }
        match self.stale_since.load(Ordering::Acquire) {
            FRESH => Ok(()),
            NEVER => Err(DenyError::Unavailable),
            since if self.now_ms() - since > self.max_staleness.as_millis() as i64 => {
                Err(DenyError::Unavailable)
            }
            _ => Ok(()),
        }
    }

    /// `up` when current, `degraded` while stale within the bound, `down` beyond it.
    pub fn health(&self) -> &'static str {
        match self.stale_since.load(Ordering::Acquire) {
            FRESH => "up",
            NEVER => "down",
            since if self.now_ms() - since > self.max_staleness.as_millis() as i64 => "down",
            _ => "degraded",
        }
    }

    /// How long the view has not been known to be current (zero while it is; since the
    /// process started when it never was).
    pub fn stale_for(&self) -> Duration {
        let since = match self.stale_since.load(Ordering::Acquire) {
            FRESH => return Duration::ZERO,
            NEVER => 0,
            since => since,
        };
        Duration::from_millis((self.now_ms() - since).max(0) as u64)
    }

    /// Declare the view current. The Redis feed does this after each full sync; a process
    /// that embeds a view without Redis (benchmarks, tests) may call it directly.
    pub fn mark_fresh(&self) {
        if self.stale_since.swap(FRESH, Ordering::AcqRel) != FRESH {
            tracing::info!("denylist view is current");
        }
    }

    fn mark_stale(&self) {
        let now = self.now_ms();
        if self
            .stale_since
            .compare_exchange(FRESH, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(
                "denylist view may be missing revocations (Redis unreachable or emptied)"
            );
        }
    }

    pub fn insert(&self, revocation: Revocation, expires_at: i64) {
        self.view
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(revocation, expires_at);
    }

    pub fn len(&self) -> usize {
        self.view.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keep the view current, for as long as the view exists (run it as a background task).
    pub fn feed(
        self: &Arc<Self>,
        redis_url: String,
        keys: DenylistKeys,
    ) -> impl Future<Output = ()> + Send + 'static {
        let me = Arc::downgrade(self);
        async move {
            let client = match redis::Client::open(redis_url) {
                Ok(client) => client,
                Err(err) => {
                    tracing::error!(error = %err, "invalid Redis URL; the denylist stays unavailable");
                    return;
                }
            };
            let mut backoff = Duration::from_millis(100);
            while let Some(this) = me.upgrade() {
                let started = Instant::now();
                if let Err(err) = this.follow(&client, &keys).await {
                    tracing::debug!(error = %err, "denylist subscription ended");
                }
                this.mark_stale();
                drop(this);
                if started.elapsed() > Duration::from_secs(5) {
                    backoff = Duration::from_millis(100);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }

    async fn follow(&self, client: &redis::Client, keys: &DenylistKeys) -> anyhow::Result<()> {
        let step = Duration::from_secs(2);
        let mut pubsub = tokio::time::timeout(step, client.get_async_pubsub()).await??;
        tokio::time::timeout(step, pubsub.subscribe(&keys.channel)).await??;
        let (mut sink, mut stream) = pubsub.split();
        let mut conn =
            tokio::time::timeout(step, client.get_multiplexed_async_connection()).await??;
        let mut synced = self.resync(&mut conn, keys).await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { anyhow::bail!("subscription closed") };
                    let payload: String = msg.get_payload().unwrap_or_default();
                    match parse_message(&payload) {
                        Some((revocation, exp)) => self.insert(revocation, exp),
                        None => tracing::warn!("ignoring a malformed revocation message"),
                    }
                }
                _ = tick.tick() => {
                    ticks += 1;
                    tokio::time::timeout(Duration::from_secs(1), sink.ping::<redis::Value>()).await??;
                    let marker: bool = tokio::time::timeout(
                        Duration::from_secs(1),
                        redis::cmd("EXISTS").arg(&keys.synced).query_async(&mut conn),
                    )
                    .await??;
                    if marker && !synced {
                        // Redis was emptied and has been replayed: load what it holds now.
                        synced = self.resync(&mut conn, keys).await?;
                    } else if !marker {
                        synced = false;
                        self.mark_stale();
                    }
                    if ticks % 60 == 0 {
                        self.view
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .prune(chrono::Utc::now().timestamp());
                    }
                }
            }
        }
    }

    /// Load every live entry; mark the view fresh when Redis holds the complete set.
    async fn resync(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
        keys: &DenylistKeys,
    ) -> anyhow::Result<bool> {
        let now = chrono::Utc::now().timestamp();
        let (entries, marker): (Vec<(String, f64)>, bool) = tokio::time::timeout(
            Duration::from_secs(5),
            redis::pipe()
                .cmd("ZRANGEBYSCORE")
                .arg(&keys.set)
                .arg(now)
                .arg("+inf")
                .arg("WITHSCORES")
                .cmd("EXISTS")
                .arg(&keys.synced)
                .query_async(conn),
        )
        .await??;
        {
            let mut view = self.view.write().unwrap_or_else(|e| e.into_inner());
            for (member, exp) in entries {
                if let Some(revocation) = Revocation::parse_member(&member) {
                    view.insert(revocation, exp as i64);
                }
            }
            view.prune(now);
        }
        if marker {
            self.mark_fresh();
        } else {
            self.mark_stale();
        }
        Ok(marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Audience;

    fn claims(sid: &str) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            aud: Audience::One("a".into()),
            sub: "u".into(),
            exp: i64::MAX / 2,
            iat: 1,
            nbf: None,
            jti: "j".into(),
            sid: Some(sid.into()),
            role: "user".into(),
            scope: String::new(),
            client_id: None,
            email_verified: None,
            amr: None,
        }
    }

    #[test]
    fn a_never_synced_view_is_unavailable() {
        let d = Denylist::new(Duration::from_secs(5));
        assert_eq!(d.check(&claims("s")), Err(DenyError::Unavailable));
        assert_eq!(d.health(), "down");
    }

    #[test]
    fn staleness_is_tolerated_only_within_the_bound() {
        let d = Denylist::new(Duration::from_millis(50));
        d.mark_fresh();
        d.insert(Revocation::Session("gone".into()), i64::MAX / 2);
        assert_eq!(d.check(&claims("s")), Ok(()));
        assert_eq!(d.check(&claims("gone")), Err(DenyError::Revoked));
        d.mark_stale();
        assert_eq!(d.check(&claims("s")), Ok(()));
        assert_eq!(d.health(), "degraded");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(d.check(&claims("s")), Err(DenyError::Unavailable));
        assert_eq!(d.check(&claims("gone")), Err(DenyError::Revoked));
        d.mark_fresh();
        assert_eq!(d.check(&claims("s")), Ok(()));
    }
}
