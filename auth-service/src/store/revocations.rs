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

outbox_queries!(revocations, RevocationRow);

/// How many distinct denylist members the published revocations make that expire after
/// `now` (unix seconds, compared as Redis compares its scores): what Redis must hold at
/// least, since a row is marked published only after Redis took it.
pub async fn published_live_members(conn: &mut AsyncPgConnection, now: i64) -> QueryResult<i64> {
    diesel::sql_query(
        "SELECT count(DISTINCT kind || ':' || value || CASE WHEN kind = 'user' \
         THEN ':' || floor(extract(epoch FROM revoked_at))::bigint ELSE '' END) AS n \
         FROM revocations WHERE published_at IS NOT NULL \
         AND floor(extract(epoch FROM expires_at)) > $1",
    )
    .bind::<diesel::sql_types::BigInt, _>(now)
    .get_result::<Count>(conn)
    .await
    .map(|c| c.n)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// How long the oldest revocation still waiting to be published has waited, by the
/// database's clock (so no replica's clock skew stretches it).
pub async fn oldest_unpublished_age(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Option<std::time::Duration>> {
    let ms: Option<Millis> = diesel::sql_query(
        "SELECT (extract(epoch FROM now() - min(created_at)) * 1000)::bigint AS ms \
         FROM revocations WHERE published_at IS NULL HAVING count(*) > 0",
    )
    .get_result(conn)
    .await
    .optional()?;
    Ok(ms.map(|m| std::time::Duration::from_millis(m.ms.max(0) as u64)))
}

#[derive(QueryableByName)]
struct Millis {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    ms: i64,
}

/// Record that `instance` ran its loop now (on the database's clock).
pub async fn heartbeat(conn: &mut AsyncPgConnection, instance: &str) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO denylist_writers (instance) VALUES ($1) ON CONFLICT (instance) \
         DO UPDATE SET heartbeat_at = now(), updated_at = now()",
    )
    .bind::<diesel::sql_types::Text, _>(instance)
    .execute(conn)
    .await
    .map(drop)
}

/// Remove `instance` from the writers, and say whether any other has run its loop within
/// `recent`.
pub async fn leave_writers(
    conn: &mut AsyncPgConnection,
    instance: &str,
    recent: std::time::Duration,
) -> QueryResult<bool> {
    diesel::sql_query("DELETE FROM denylist_writers WHERE instance = $1")
        .bind::<diesel::sql_types::Text, _>(instance)
        .execute(conn)
        .await?;
    let others: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM denylist_writers \
         WHERE heartbeat_at > now() - make_interval(secs => $1)",
    )
    .bind::<diesel::sql_types::Double, _>(recent.as_secs_f64())
    .get_result(conn)
    .await?;
    Ok(others.n > 0)
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
