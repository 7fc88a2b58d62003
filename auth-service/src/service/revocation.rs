//! Publishing revocations to the Redis denylist.
//!
//! PostgreSQL is the source of truth: a revocation is written to the `revocations` table in
//! the same transaction that revokes the session, and the API answers only after that
//! commit. Then it is pushed to Redis at once (`ZADD` + `PUBLISH` in one `MULTI`), so
//! verifiers drop the session's access tokens within milliseconds. If Redis is unreachable
//! the row stays unpublished and a background loop retries every second; the same loop
//! replays every live revocation when it finds Redis has lost them (the `synced` marker is
//! gone after a restart with no persistence), trims expired entries, and purges expired
//! rows.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use redis::aio::ConnectionManager;
use shared::db::PgPool;
use shared::denylist::{self, DenylistKeys, Revocation};

use crate::store::revocations::{self as store, NewRevocation, RevocationRow};

pub struct RevocationPublisher {
    pool: PgPool,
    redis: ConnectionManager,
    keys: DenylistKeys,
    /// How long a revocation matters: the access-token lifetime plus clock leeway.
    ttl: chrono::Duration,
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

    /// Push committed revocations to Redis now; on failure the background loop retries.
    pub async fn publish(&self, rows: Vec<RevocationRow>) {
        if rows.is_empty() {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(1), self.push(&rows)).await {
            Ok(Ok(())) => self.mark_published(&rows).await,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "publishing revocations to Redis failed; will retry")
            }
            Err(_) => tracing::warn!("publishing revocations to Redis timed out; will retry"),
        }
    }

    async fn push(&self, rows: &[RevocationRow]) -> redis::RedisResult<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for row in rows {
            let Some(revocation) = to_revocation(row) else {
                continue;
            };
            let exp = row.expires_at.timestamp();
            pipe.zadd(&self.keys.set, revocation.member(), exp).ignore();
            pipe.publish(&self.keys.channel, denylist::message(&revocation, exp))
                .ignore();
        }
        let mut conn = self.redis.clone();
        pipe.query_async::<()>(&mut conn).await
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

    /// One pass of the background loop.
    pub async fn sync_once(&self) -> anyhow::Result<()> {
        let mut redis = self.redis.clone();
        let now = Utc::now();
        let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let synced: bool = redis::cmd("EXISTS")
            .arg(&self.keys.synced)
            .query_async(&mut redis)
            .await?;
        if !synced {
            let live = store::live(&mut conn, now).await?;
            for chunk in live.chunks(500) {
                self.push(chunk).await?;
            }
            redis::cmd("SET")
                .arg(&self.keys.synced)
                .arg(now.timestamp())
                .query_async::<()>(&mut redis)
                .await?;
            tracing::info!(count = live.len(), "replayed the denylist into Redis");
        }
        let pending = store::unpublished(&mut conn, 500).await?;
        if !pending.is_empty() {
            self.push(&pending).await?;
            let ids: Vec<i64> = pending.iter().map(|r| r.id).collect();
            store::mark_published(&mut conn, &ids, now).await?;
            tracing::info!(count = ids.len(), "published pending revocations");
        }
        redis::cmd("ZREMRANGEBYSCORE")
            .arg(&self.keys.set)
            .arg("-inf")
            .arg(now.timestamp())
            .query_async::<()>(&mut redis)
            .await?;
        store::purge_expired(&mut conn, now).await?;
        Ok(())
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
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("denylist sync recovered");
                    }
                    Ok(()) => {}
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
