//! Publishing the outbox to the Redis stream other services consume.

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

    /// One run of the background job: publish, and leave a failure for the next run.
    pub async fn publish_logged(&self) {
        if let Err(err) = self.publish_pending().await {
            tracing::debug!(error = %err, "publishing events failed; will retry");
        }
    }
}
