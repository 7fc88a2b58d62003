//! Publishing revocations to the Redis denylist, and vouching for it.
//!
//! PostgreSQL is the source of truth: a revocation is written to the `revocations` table in
//! the same transaction that revokes the session, and the API answers only after that
//! commit. Then it is pushed to Redis at once (`ZADD` + `PUBLISH`, in chunks), so verifiers
//! drop the session's access tokens within milliseconds. If Redis is unreachable the row
//! stays unpublished and a background loop retries every second.
//!
//! Verifiers trust their copy only while the `synced` lease is in Redis, and freshness is
//! the writer's to vouch for. Each pass of the loop, every second:
//!
//! 1. beats in PostgreSQL (`denylist_writers`), whatever Redis does;
//! 2. gives a lease left without expiry by a writer that stopped back its expiry;
//! 3. counts what Redis must hold (the distinct members of every published, live
//!    revocation) and replays every live revocation when Redis holds fewer: it restarted
//!    empty, evicted, or failed over to a replica that lagged;
//! 4. publishes what is pending;
//! 5. renews the lease, in one script that first checks Redis still holds that many
//!    (a Redis that restarted during the pass gets no lease), and only while no revocation
//!    has waited more than a second to be published.
//!
//! A writer cut off from Redis, or whose writes Redis refuses, stops renewing; the lease
//! lapses within [`LEASE`] and verifiers fail closed. The last writer to stop cleanly
//! (no other has beaten in PostgreSQL lately) keeps the lease without expiry, so that
//! verifiers go on while no auth service runs and nothing can be revoked.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use redis::aio::ConnectionManager;
use shared::db::PgPool;
use shared::denylist::{self, DenylistKeys, Revocation};
use uuid::Uuid;

use crate::store::revocations::{self as store, NewRevocation, RevocationRow};

/// How long one renewal of the freshness lease lasts; the loop renews every second.
pub const LEASE: Duration = Duration::from_secs(3);
/// The lease is renewed only while no revocation has waited longer than this.
const MAX_UNPUBLISHED_AGE: Duration = Duration::from_secs(1);
/// A writer that beat within this long is alive (its loop runs every second).
const WRITER_ALIVE: Duration = Duration::from_secs(10);
/// Revocations per Redis call: a logout-all of many sessions is several short calls, each
/// with its own timeout, rather than one long transaction.
const CHUNK: usize = 200;
/// How long one Redis call of the request path may take before the loop takes over.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// Revocations outlive the tokens they match by this much more than the largest leeway, for
/// a revoking transaction that waited on locks after taking its time.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// `ZADD` (keeping the later expiry) and `PUBLISH` each revocation.
/// KEYS: the set. ARGV: the channel, then member, expiry, message per revocation.
const PUSH: &str = r#"
for i = 2, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], 'GT', ARGV[i + 1], ARGV[i])
  redis.call('PUBLISH', ARGV[1], ARGV[i + 2])
end
return 1
"#;

/// Renew the lease only if Redis still holds at least the members it must.
/// KEYS: the set, the lease. ARGV: now (s), members expected, lease (ms), value.
const RENEW: &str = r#"
if redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf') < tonumber(ARGV[2]) then
  return 0
end
redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
return 1
"#;

pub struct RevocationPublisher {
    pool: PgPool,
    redis: ConnectionManager,
    keys: DenylistKeys,
    /// How long a revocation matters: the access-token lifetime plus the largest leeway.
    ttl: chrono::Duration,
    /// This process, among the writers.
    instance: String,
    push: redis::Script,
    renew: redis::Script,
    /// Whether the last sync failed (to log only changes).
    failing: AtomicBool,
}

fn kind_and_value(r: &Revocation) -> (&'static str, &str) {
    match r {
        Revocation::Session(sid) => ("sid", sid),
        Revocation::Token(jti) => ("jti", jti),
        Revocation::User { user, .. } => ("user", user),
    }
}

fn to_revocation(row: &RevocationRow) -> Option<Revocation> {
    Revocation::from_record(&row.kind, &row.value, row.revoked_at.timestamp())
}

impl RevocationPublisher {
    pub fn new(
        pool: PgPool,
        redis: ConnectionManager,
        prefix: &str,
        ttl: chrono::Duration,
    ) -> Self {
        Self {
            pool,
            redis,
            keys: DenylistKeys::new(prefix),
            ttl,
            instance: Uuid::now_v7().to_string(),
            push: redis::Script::new(PUSH),
            renew: redis::Script::new(RENEW),
            failing: AtomicBool::new(false),
        }
    }

    /// Write the durable record; call inside the revoking transaction. `now` is the
    /// revocation's time (for a `user` revocation, the cutoff: tokens issued up to it).
    pub async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        revocations: &[Revocation],
        now: DateTime<Utc>,
    ) -> diesel::QueryResult<Vec<RevocationRow>> {
        let expires_at = now + self.ttl + EXPIRY_MARGIN;
        let rows: Vec<NewRevocation<'_>> = revocations
            .iter()
            .map(|r| {
                let (kind, value) = kind_and_value(r);
                NewRevocation {
                    kind,
                    value,
                    revoked_at: now,
                    expires_at,
                }
            })
            .collect();
        store::insert_many(conn, &rows).await
    }

    /// Push committed revocations to Redis now, chunk by chunk, on the caller's connection
    /// (no second one from the pool); what fails is left to the background loop. Returns
    /// whether everything was published.
    pub async fn publish(&self, conn: &mut AsyncPgConnection, rows: Vec<RevocationRow>) -> bool {
        for chunk in rows.chunks(CHUNK) {
            match tokio::time::timeout(PUBLISH_TIMEOUT, self.push(chunk)).await {
                Ok(Ok(())) => {
                    let ids: Vec<i64> = chunk.iter().map(|r| r.id).collect();
                    if let Err(err) = store::mark_published(conn, &ids, Utc::now()).await {
                        // Harmless: the loop publishes them again, and publishing is
                        // idempotent.
                        tracing::warn!(error = %err, "marking revocations published failed");
                    }
                }
                Ok(Err(err)) => {
                    shared::metrics::redis_error("denylist_publish");
                    tracing::warn!(error = %err, "publishing revocations to Redis failed; will retry");
                    return false;
                }
                Err(_) => {
                    shared::metrics::redis_error("denylist_publish");
                    tracing::warn!("publishing revocations to Redis timed out; will retry");
                    return false;
                }
            }
        }
        true
    }

    async fn push(&self, rows: &[RevocationRow]) -> redis::RedisResult<()> {
        let mut invocation = self.push.prepare_invoke();
        invocation.key(&self.keys.set).arg(&self.keys.channel);
        let mut any = false;
        for row in rows {
            let Some(revocation) = to_revocation(row) else {
                continue;
            };
            let exp = row.expires_at.timestamp();
            invocation
                .arg(revocation.member())
                .arg(exp)
                .arg(denylist::message(&revocation, exp));
            any = true;
        }
        if !any {
            return Ok(());
        }
        let mut conn = self.redis.clone();
        invocation.invoke_async::<i64>(&mut conn).await.map(drop)
    }

    /// Whether revocations are waiting to be published (the CLI, which runs no loop, says
    /// so rather than claim they are in force everywhere).
    pub async fn pending(&self) -> anyhow::Result<bool> {
        let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(store::oldest_unpublished_age(&mut conn).await?.is_some())
    }

    /// One pass of the background loop; returns whether it renewed the lease.
    pub async fn sync_once(&self) -> anyhow::Result<bool> {
        let mut redis = self.redis.clone();
        let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        store::heartbeat(&mut conn, &self.instance).await?;
        // Read before anything Redis may fail: the lag grows while Redis is unreachable,
        // which is when it matters.
        let lag = store::oldest_unpublished_age(&mut conn).await?;
        metrics::gauge!("revocation_publish_lag_seconds")
            .set(lag.unwrap_or_default().as_secs_f64());
        let now = Utc::now().timestamp();
        // PostgreSQL first: a row is marked published only after Redis took it, so read in
        // this order Redis can hold fewer members only if it lost some.
        let expected = store::published_live_members(&mut conn, now).await?;
        let (ttl, held): (i64, i64) = redis::pipe()
            .cmd("PTTL")
            .arg(&self.keys.synced)
            .cmd("ZCOUNT")
            .arg(&self.keys.set)
            .arg(format!("({now}"))
            .arg("+inf")
            .query_async(&mut redis)
            .await?;
        if ttl == -1 {
            // Left without expiry by the last writer to stop: a writer runs again.
            redis::cmd("PEXPIRE")
                .arg(&self.keys.synced)
                .arg(LEASE.as_millis() as u64)
                .query_async::<()>(&mut redis)
                .await?;
        }
        if held < expected {
            tracing::warn!(
                expected,
                held,
                "Redis holds fewer revocations than were published (restarted, evicted or failed over); replaying"
            );
            redis::cmd("DEL")
                .arg(&self.keys.synced)
                .query_async::<()>(&mut redis)
                .await?;
            let live = store::live(&mut conn, Utc::now()).await?;
            for chunk in live.chunks(CHUNK) {
                self.push(chunk).await?;
            }
            tracing::info!(count = live.len(), "replayed the denylist into Redis");
        }
        // A bounded number of chunks per pass; a backlog beyond it just leaves the lease
        // unrenewed until it is through.
        let mut published_any = false;
        for _ in 0..50 {
            let pending = store::unpublished(&mut conn, CHUNK as i64).await?;
            if pending.is_empty() {
                break;
            }
            self.push(&pending).await?;
            let ids: Vec<i64> = pending.iter().map(|r| r.id).collect();
            store::mark_published(&mut conn, &ids, Utc::now()).await?;
            tracing::info!(count = ids.len(), "published pending revocations");
            published_any = true;
        }
        // Nothing was pending just now (the usual pass): nothing has waited long, and the
        // age need not be read a second time.
        let waiting = if published_any {
            store::oldest_unpublished_age(&mut conn).await?
        } else {
            None
        };
        let mut renewed = false;
        if waiting.is_none_or(|age| age <= MAX_UNPUBLISHED_AGE) {
            let done: i64 = self
                .renew
                .key(&self.keys.set)
                .key(&self.keys.synced)
                .arg(now)
                .arg(expected)
                .arg(LEASE.as_millis() as u64)
                .arg(now)
                .invoke_async(&mut redis)
                .await?;
            renewed = done == 1;
        }
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(&self.keys.set)
            .arg("-inf")
            .arg(now)
            .query_async::<()>(&mut redis)
            .await?;
        Ok(renewed)
    }

    /// Leave cleanly, once the server has drained: publish what is pending and, when no
    /// other writer has run lately, keep the lease without expiry, so that verifiers go on
    /// trusting a complete denylist while no auth service runs. A server that did not drain
    /// (requests may still revoke) leaves the lease to lapse.
    pub async fn leave(&self, drained: bool) {
        let left = async {
            let renewed = self.sync_once().await?;
            let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let others = store::leave_writers(&mut conn, &self.instance, WRITER_ALIVE).await?;
            if !renewed || !drained || others {
                return anyhow::Ok(false);
            }
            let kept: i64 = redis::cmd("PERSIST")
                .arg(&self.keys.synced)
                .query_async(&mut self.redis.clone())
                .await?;
            anyhow::Ok(kept == 1)
        };
        match tokio::time::timeout(Duration::from_secs(3), left).await {
            Ok(Ok(true)) => tracing::info!("last writer out: the denylist lease is kept"),
            Ok(Ok(false)) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "could not leave the denylist cleanly; its lease will lapse")
            }
            Err(_) => tracing::warn!("leaving the denylist timed out; its lease will lapse"),
        }
    }

    /// One run of the background job: [`Self::sync_once`], logging only when it starts or
    /// stops failing.
    pub async fn sync_logged(&self) {
        let outcome = self.sync_once().await;
        // 1 while this writer renews the denylist's lease. Any writer's renewal keeps
        // verifiers going: only when no replica renews (0 everywhere) do they fail closed.
        metrics::gauge!("denylist_lease_renewed").set(if matches!(outcome, Ok(true)) {
            1.0
        } else {
            0.0
        });
        if outcome.is_err() {
            metrics::counter!("denylist_sync_failures_total").increment(1);
        }
        let failing = self
            .failing
            .swap(!matches!(outcome, Ok(true)), Ordering::Relaxed);
        match outcome {
            Ok(true) if failing => tracing::info!("denylist sync recovered"),
            Ok(false) if !failing => tracing::warn!(
                "revocations wait to be published; the denylist lease is not renewed"
            ),
            Err(err) if !failing => {
                tracing::warn!(error = %err, "denylist sync failed; retrying every second")
            }
            _ => {}
        }
    }
}
