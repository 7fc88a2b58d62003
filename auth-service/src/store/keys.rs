//! Signing keys in PostgreSQL, so every replica signs with the same key.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde_json::Value;

use crate::schema::signing_keys;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = signing_keys)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub private_key: Vec<u8>,
    pub public_jwk: Value,
    pub activates_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = signing_keys)]
pub struct NewKey<'a> {
    pub kid: &'a str,
    pub alg: &'a str,
    pub private_key: &'a [u8],
    pub public_jwk: &'a Value,
    pub activates_at: DateTime<Utc>,
}

/// Every key that is or may still be published, oldest activation first.
pub async fn load_all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<KeyRow>> {
    signing_keys::table
        .select(KeyRow::as_select())
        .order(signing_keys::activates_at.asc())
        .load(conn)
        .await
}

/// Insert `key` unless some key exists already (first start of several replicas at once:
/// one wins, the others use its key). Returns whether it was inserted.
pub async fn insert_if_none(conn: &mut AsyncPgConnection, key: NewKey<'_>) -> QueryResult<bool> {
    conn.transaction(async |conn| {
        // One advisory lock for "the first key", held to the end of this transaction.
        diesel::sql_query("SELECT pg_advisory_xact_lock(727274001)")
            .execute(conn)
            .await?;
        let existing: i64 = signing_keys::table.count().get_result(conn).await?;
        if existing > 0 {
            return Ok(false);
        }
        diesel::insert_into(signing_keys::table)
            .values(&key)
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// The database's clock.
pub async fn now(conn: &mut AsyncPgConnection) -> QueryResult<DateTime<Utc>> {
    diesel::select(diesel::dsl::sql::<diesel::sql_types::Timestamptz>("now()"))
        .get_result(conn)
        .await
}

pub async fn insert(conn: &mut AsyncPgConnection, key: NewKey<'_>) -> QueryResult<()> {
    diesel::insert_into(signing_keys::table)
        .values(&key)
        .execute(conn)
        .await
        .map(drop)
}

/// Remove keys that are no longer published.
pub async fn delete(conn: &mut AsyncPgConnection, kids: &[String]) -> QueryResult<usize> {
    diesel::delete(signing_keys::table.filter(signing_keys::kid.eq_any(kids)))
        .execute(conn)
        .await
}
