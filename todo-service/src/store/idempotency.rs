//! Stored first responses of `POST /v1/todos` by `Idempotency-Key`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::schema::idempotency_keys;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys)]
pub struct StoredResponse {
    pub request_hash: Vec<u8>,
    pub response_status: i32,
    pub response_body: Value,
    pub location: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = idempotency_keys)]
pub struct NewStoredResponse<'a> {
    pub owner_id: &'a str,
    pub key: &'a str,
    pub request_hash: &'a [u8],
    pub response_status: i32,
    pub response_body: &'a Value,
    pub location: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

/// Serialise requests with one key (until the transaction ends): the first stores its
/// response, the others wait and then find it.
pub async fn lock(conn: &mut AsyncPgConnection, owner: &str, key: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 7))")
        .bind::<diesel::sql_types::Text, _>(owner)
        .bind::<diesel::sql_types::Text, _>(key)
        .execute(conn)
        .await
        .map(drop)
}

/// The unexpired stored response for this key.
pub async fn find(
    conn: &mut AsyncPgConnection,
    owner: &str,
    key: &str,
    now: DateTime<Utc>,
) -> QueryResult<Option<StoredResponse>> {
    idempotency_keys::table
        .find((owner, key))
        .filter(idempotency_keys::expires_at.gt(now))
        .select(StoredResponse::as_select())
        .first(conn)
        .await
        .optional()
}

/// Store a response, replacing an expired record of the same key.
pub async fn store(conn: &mut AsyncPgConnection, row: NewStoredResponse<'_>) -> QueryResult<()> {
    diesel::insert_into(idempotency_keys::table)
        .values(&row)
        .on_conflict((idempotency_keys::owner_id, idempotency_keys::key))
        .do_update()
        .set((
            idempotency_keys::request_hash.eq(row.request_hash),
            idempotency_keys::response_status.eq(row.response_status),
            idempotency_keys::response_body.eq(row.response_body),
            idempotency_keys::location.eq(row.location),
            idempotency_keys::expires_at.eq(row.expires_at),
            idempotency_keys::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// One batch of the purge of expired records (see `shared::db::purge_in_batches`).
pub const PURGE_BATCH: &str = "DELETE FROM idempotency_keys WHERE (owner_id, key) IN \
     (SELECT owner_id, key FROM idempotency_keys WHERE expires_at <= $1 LIMIT $2)";
