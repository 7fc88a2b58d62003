//! Publishing revocations to the Redis denylist, and vouching for it.
//!
//! PostgreSQL is the source of truth: a revocation is written to the `revocations` table in
//! the same transaction that revokes the session, and the API answers only after that
//! commit. Then it is pushed to Redis at once (`ZADD` + `PUBLISH`, in chunks), so verifiers
//! drop the session's access tokens within milliseconds. If Redis is unreachable the row
//! stays unpublished and a background loop retries every second.
//!
//! Verifiers trust their copy only while the `synced` lease is in Redis, and freshness is
//! the writer's to vouch for: each pass of the loop renews the lease only when Redis holds
//! everything (replayed after any loss: the lease had lapsed, or the published high-water
//! mark in Redis is below PostgreSQL's) and no revocation has waited more than a second to
//! be published. A writer cut off from Redis, or whose writes Redis refuses, therefore
//! stops renewing, the lease lapses within [`LEASE`], and verifiers fail closed. The same
//! loop trims expired entries from Redis (expired rows go in the purge, `service::purge`).

use std::sync::Arc;
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
/// Revocations per Redis call: a logout-all of many sessions is several short calls, each
/// with its own timeout, rather than one long transaction.
const CHUNK: usize = 200;
/// How long one Redis call of the request path may take before the loop takes over.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// `ZADD` and `PUBLISH` each revocation, and raise the published high-water mark.
/// KEYS: the set, the mark. ARGV: the channel, the highest id, then member, expiry, message
/// per revocation.
const PUSH: &str = r#"
for i = 3, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  redis.call('PUBLISH', ARGV[1], ARGV[i + 2])
end
local hwm = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > hwm then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"#;

/// A writer that stops cleanly leaves: when no other writer holds a live registration, the
/// lease is kept without expiry (no writer, nothing to revoke).
/// KEYS: the writers, the lease. ARGV: this writer, now (ms).
const LEAVE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('PERSIST', KEYS[2])
  return 1
end
return 0
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
        }
    }

    /// Write the durable record; call inside the revoking transaction.
    pub async fn record(
        &self,
        conn: &mut AsyncPgConnection,
        revocations: &[Revocation],
        now: DateTime<Utc>,
    ) -> diesel::QueryResult<Vec<RevocationRow>> {
        let expires_at = now + self.ttl;
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

    /// Push committed revocations to Redis now, chunk by chunk; what fails is left to the
    /// background loop.
    pub async fn publish(&self, rows: Vec<RevocationRow>) {
        for chunk in rows.chunks(CHUNK) {
            match tokio::time::timeout(PUBLISH_TIMEOUT, self.push(chunk)).await {
                Ok(Ok(())) => self.mark_published(chunk).await,
                Ok(Err(err)) => {
                    tracing::warn!(error = %err, "publishing revocations to Redis failed; will retry");
                    return;
                }
                Err(_) => {
                    tracing::warn!("publishing revocations to Redis timed out; will retry");
                    return;
                }
            }
        }
    }

    async fn push(&self, rows: &[RevocationRow]) -> redis::RedisResult<()> {
        let Some(highest) = rows.iter().map(|r| r.id).max() else {
            return Ok(());
        };
        let mut invocation = self.push.prepare_invoke();
        invocation
            .key(&self.keys.set)
            .key(&self.keys.hwm)
            .arg(&self.keys.channel)
            .arg(highest);
        for row in rows {
            let Some(revocation) = to_revocation(row) else {
                continue;
            };
            let exp = row.expires_at.timestamp();
            invocation
                .arg(revocation.member())
                .arg(exp)
                .arg(denylist::message(&revocation, exp));
        }
        let mut conn = self.redis.clone();
        invocation.invoke_async::<i64>(&mut conn).await.map(drop)
    }

    async fn mark_published(&self, rows: &[RevocationRow]) {
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let result = async {
            let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            store::mark_published(&mut conn, &ids, Utc::now()).await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(err) = result {
            // Harmless: the loop will publish them again, and publishing is idempotent.
            tracing::warn!(error = %err, "marking revocations published failed");
        }
    }

    /// One pass of the background loop; returns whether it renewed the lease.
    pub async fn sync_once(&self) -> anyhow::Result<bool> {
        let mut redis = self.redis.clone();
        let now = Utc::now();
        let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        // PostgreSQL first: a row is marked published only after Redis took it, so read in
        // this order Redis's mark can be below PostgreSQL's only if Redis lost writes.
        let published = store::max_published_id(&mut conn).await?;
        let (lease, hwm): (bool, Option<i64>) = redis::pipe()
            .exists(&self.keys.synced)
            .get(&self.keys.hwm)
            .query_async(&mut redis)
            .await?;
        let lost = published.is_some_and(|p| hwm.unwrap_or(0) < p);
        if !lease || lost {
            if lost {
                tracing::warn!("Redis lost published revocations (a failover?); replaying them");
            }
            let live = store::live(&mut conn, now).await?;
            for chunk in live.chunks(CHUNK) {
                self.push(chunk).await?;
            }
            tracing::info!(count = live.len(), "replayed the denylist into Redis");
        }
        // A bounded number of chunks per pass; a backlog beyond it just leaves the lease
        // unrenewed until it is through.
        for _ in 0..50 {
            let pending = store::unpublished(&mut conn, CHUNK as i64).await?;
            if pending.is_empty() {
                break;
            }
            self.push(&pending).await?;
            let ids: Vec<i64> = pending.iter().map(|r| r.id).collect();
            store::mark_published(&mut conn, &ids, Utc::now()).await?;
            tracing::info!(count = ids.len(), "published pending revocations");
        }
        let oldest = store::oldest_unpublished(&mut conn).await?;
        let renewed = oldest
            .is_none_or(|at| (Utc::now() - at).to_std().unwrap_or_default() <= MAX_UNPUBLISHED_AGE);
        let mut pipe = redis::pipe();
        if renewed {
            let lease_ms = LEASE.as_millis() as u64;
            pipe.cmd("SET")
                .arg(&self.keys.synced)
                .arg(now.timestamp())
                .arg("PX")
                .arg(lease_ms)
                .ignore()
                .zadd(
                    &self.keys.writers,
                    &self.instance,
                    now.timestamp_millis() + lease_ms as i64,
                )
                .ignore();
        }
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&self.keys.set)
            .arg("-inf")
            .arg(now.timestamp())
            .ignore();
        pipe.query_async::<()>(&mut redis).await?;
        Ok(renewed)
    }

    /// Leave cleanly: publish what is pending and, when no other writer is alive, keep the
    /// lease without expiry, so that verifiers go on trusting a complete denylist while no
    /// auth service runs. Called once the server has drained.
    pub async fn leave(&self) {
        let left = async {
            if !self.sync_once().await? {
                anyhow::bail!("revocations are still unpublished");
            }
            let kept: i64 = redis::Script::new(LEAVE)
                .key(&self.keys.writers)
                .key(&self.keys.synced)
                .arg(&self.instance)
                .arg(Utc::now().timestamp_millis())
                .invoke_async(&mut self.redis.clone())
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

    /// Run [`Self::sync_once`] every `every` until the publisher is dropped.
    pub fn spawn(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                match me.sync_once().await {
                    Ok(renewed) => {
                        if failing && renewed {
                            failing = false;
                            tracing::info!("denylist sync recovered");
                        } else if !failing && !renewed {
                            failing = true;
                            tracing::warn!(
                                "revocations wait to be published; the denylist lease is not renewed"
                            );
                        }
                    }
                    Err(err) if !failing => {
                        failing = true;
                        tracing::warn!(error = %err, "denylist sync failed; retrying every second");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}
