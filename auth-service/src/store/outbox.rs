//! Events for other services, written in the transaction of the change they describe and
//! published to a Redis stream afterwards (at least once).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::schema::outbox_events;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox_events)]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub payload: Value,
}

pub async fn insert(conn: &mut AsyncPgConnection, kind: &str, payload: &Value) -> QueryResult<()> {
    diesel::insert_into(outbox_events::table)
        .values((
            outbox_events::kind.eq(kind),
            outbox_events::payload.eq(payload),
        ))
        .execute(conn)
        .await
        .map(drop)
}

pub async fn unpublished(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Vec<EventRow>> {
    outbox_events::table
        .filter(outbox_events::published_at.is_null())
        .order(outbox_events::id.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await
}

pub async fn mark_published(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(outbox_events::table.filter(outbox_events::id.eq_any(ids)))
        .set((
            outbox_events::published_at.eq(at),
            outbox_events::updated_at.eq(at),
        ))
        .execute(conn)
        .await
        .map(drop)
}
