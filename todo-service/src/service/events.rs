//! Consuming the auth service's events (`shared::events`) from the Redis stream, in the
//! consumer group `todo-service`: durable across restarts (unacknowledged entries are
//! delivered again, and entries of a consumer that died are claimed after a minute), at
//! least once, and idempotent here. A deleted user's todos are deleted.

use std::sync::Weak;
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use shared::events::{USER_DELETED, UserDeleted};

use crate::state::AppState;

const GROUP: &str = "todo-service";

/// Consume events for as long as the state exists (run it as a background task).
pub async fn consumer(state: Weak<AppState>, redis_url: String, prefix: String) {
    let stream = shared::events::stream_key(&prefix);
    let consumer = format!("todo-{}", uuid::Uuid::new_v4().simple());
    let client = match redis::Client::open(redis_url) {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "invalid Redis URL; events are not consumed");
            return;
        }
    };
    loop {
        if state.strong_count() == 0 {
            break;
        }
        if let Err(err) = consume(&state, &client, &stream, &consumer).await {
            tracing::debug!(error = %err, "event consumer stopped; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume(
    state: &Weak<AppState>,
    client: &redis::Client,
    stream: &str,
    consumer: &str,
) -> anyhow::Result<()> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    // From the start of the stream the first time, so nothing published before this
    // service first ran is missed.
    let created: redis::RedisResult<()> = conn.xgroup_create_mkstream(stream, GROUP, "0").await;
    if let Err(err) = created
        && err.code() != Some("BUSYGROUP")
    {
        return Err(err.into());
    }
    // Entries a dead consumer took but never acknowledged.
    let _: redis::Value = redis::cmd("XAUTOCLAIM")
        .arg(stream)
        .arg(GROUP)
        .arg(consumer)
        .arg(60_000)
        .arg("0-0")
        .arg("COUNT")
        .arg(100)
        .query_async(&mut conn)
        .await?;
    // Our own unacknowledged entries first ("0"), then new ones (">").
    let mut from = "0";
    loop {
        let opts = StreamReadOptions::default()
            .group(GROUP, consumer)
            .count(100)
            .block(1000);
        let reply: StreamReadReply = conn.xread_options(&[stream], &[from], &opts).await?;
        let entries: Vec<_> = reply.keys.into_iter().flat_map(|k| k.ids).collect();
        if entries.is_empty() && from == "0" {
            from = ">";
            continue;
        }
        let Some(state) = state.upgrade() else {
            return Ok(());
        };
        for entry in entries {
            let kind: String = entry.get("kind").unwrap_or_default();
            let payload: String = entry.get("payload").unwrap_or_default();
            handle(&state, &kind, &payload).await?;
            let _: i64 = conn.xack(stream, GROUP, &[&entry.id]).await?;
        }
    }
}

async fn handle(state: &AppState, kind: &str, payload: &str) -> anyhow::Result<()> {
    match kind {
        USER_DELETED => {
            let event: UserDeleted = serde_json::from_str(payload)?;
            let mut conn = state.pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let deleted = crate::store::todos::delete_owner(&mut conn, &event.user_id).await?;
            tracing::info!(owner = %event.user_id, deleted, "deleted the todos of a deleted user");
        }
        other => tracing::debug!(kind = other, "ignoring an event of another kind"),
    }
    Ok(())
}
