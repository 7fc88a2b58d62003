//! OAuth 2 service clients. Secrets are stored only as SHA-256 hashes.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::oauth_clients;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oauth_clients)]
pub struct ClientRow {
    pub id: Uuid,
    pub name: String,
    pub scopes: Vec<String>,
    pub secret_hash: Vec<u8>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = oauth_clients)]
pub struct NewClient<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub secret_hash: &'a [u8],
    pub created_by: Option<Uuid>,
}

pub async fn insert(conn: &mut AsyncPgConnection, client: NewClient<'_>) -> QueryResult<ClientRow> {
    diesel::insert_into(oauth_clients::table)
        .values(&client)
        .returning(ClientRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ClientRow>> {
    oauth_clients::table
        .find(id)
        .select(ClientRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Clients in creation order, after `after`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<ClientRow>> {
    let mut query = oauth_clients::table
        .select(ClientRow::as_select())
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(oauth_clients::id.gt(after));
    }
    query
        .order(oauth_clients::id.asc())
        .limit(limit)
        .load(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::delete(oauth_clients::table.find(id))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Whether the client exists, its row share-locked for the rest of the transaction (a
/// deletion waits for it).
pub async fn lock_shared(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    let found: Vec<Uuid> = oauth_clients::table
        .find(id)
        .select(oauth_clients::id)
        .for_share()
        .load(conn)
        .await?;
    Ok(!found.is_empty())
}
