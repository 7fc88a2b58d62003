//! Publishing the outbox to the Redis stream other services consume.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use redis::aio::ConnectionManager;
use shared::db::PgPool;

use crate::store::outbox;

pub struct EventPublisher {
    pool: PgPool,
    redis: ConnectionManager,
    stream: String,
}

impl EventPublisher {
    pub fn new(pool: PgPool, redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            pool,
            redis,
            stream: shared::events::stream_key(prefix),
        }
    }

    /// Publish what is pending; returns how many events went out.
    pub async fn publish_pending(&self) -> anyhow::Result<usize> {
        let mut conn = self.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let pending = outbox::unpublished(&mut conn, 200).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for event in &pending {
            pipe.cmd("XADD")
                .arg(&self.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(100_000)
                .arg("*")
                .arg("kind")
                .arg(&event.kind)
                .arg("payload")
                .arg(event.payload.to_string())
                .ignore();
        }
        let mut redis = self.redis.clone();
        pipe.query_async::<()>(&mut redis).await?;
        let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
        outbox::mark_published(&mut conn, &ids, Utc::now()).await?;
        Ok(ids.len())
    }

    /// Publish every `every` until dropped.
    pub fn spawn(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                if let Err(err) = me.publish_pending().await {
                    tracing::debug!(error = %err, "publishing events failed; will retry");
                }
            }
        })
    }
}
