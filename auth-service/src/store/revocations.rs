//! The durable record of revocations: written in the transaction that revokes, published
//! to Redis after commit, and replayed into Redis whenever Redis has lost it.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::revocations;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = revocations)]
pub struct RevocationRow {
    pub id: i64,
    pub kind: String,
    pub value: String,
    pub revoked_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = revocations)]
pub struct NewRevocation<'a> {
    pub kind: &'a str,
    pub value: &'a str,
    pub revoked_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert_many(
    conn: &mut AsyncPgConnection,
    rows: &[NewRevocation<'_>],
) -> QueryResult<Vec<RevocationRow>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    diesel::insert_into(revocations::table)
        .values(rows)
        .returning(RevocationRow::as_returning())
        .get_results(conn)
        .await
}

pub async fn unpublished(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<RevocationRow>> {
    revocations::table
        .filter(revocations::published_at.is_null())
        .order(revocations::id.asc())
        .limit(limit)
        .select(RevocationRow::as_select())
        .load(conn)
        .await
}

pub async fn mark_published(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(revocations::table.filter(revocations::id.eq_any(ids)))
        .set((
            revocations::published_at.eq(at),
            revocations::updated_at.eq(at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// The highest id marked published (what Redis must hold at least).
pub async fn max_published_id(conn: &mut AsyncPgConnection) -> QueryResult<Option<i64>> {
    revocations::table
        .filter(revocations::published_at.is_not_null())
        .select(diesel::dsl::max(revocations::id))
        .first(conn)
        .await
}

/// When the oldest revocation still waiting to be published was recorded.
pub async fn oldest_unpublished(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Option<DateTime<Utc>>> {
    revocations::table
        .filter(revocations::published_at.is_null())
        .order(revocations::id.asc())
        .select(revocations::revoked_at)
        .first(conn)
        .await
        .optional()
}

/// Every revocation that can still match a live token.
pub async fn live(
    conn: &mut AsyncPgConnection,
    now: DateTime<Utc>,
) -> QueryResult<Vec<RevocationRow>> {
    revocations::table
        .filter(revocations::expires_at.gt(now))
        .order(revocations::id.asc())
        .select(RevocationRow::as_select())
        .load(conn)
        .await
}

/// Whether this token id is revoked (a live `jti` revocation).
pub async fn token_revoked(
    conn: &mut AsyncPgConnection,
    jti: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        revocations::table
            .filter(revocations::kind.eq("jti"))
            .filter(revocations::value.eq(jti))
            .filter(revocations::expires_at.gt(now)),
    ))
    .get_result(conn)
    .await
}

/// Whether a live revocation covers this token: its own `jti`, or its subject revoked at
/// or after it was issued.
pub async fn covers(
    conn: &mut AsyncPgConnection,
    jti: &str,
    sub: &str,
    issued_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let found: i64 = revocations::table
        .filter(revocations::expires_at.gt(now))
        .filter(
            revocations::kind
                .eq("jti")
                .and(revocations::value.eq(jti))
                .or(revocations::kind
                    .eq("user")
                    .and(revocations::value.eq(sub))
                    .and(revocations::revoked_at.ge(issued_at))),
        )
        .count()
        .get_result(conn)
        .await?;
    Ok(found > 0)
}
