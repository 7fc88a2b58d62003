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

outbox_queries!(outbox_events, EventRow);
