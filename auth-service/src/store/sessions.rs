//! Sessions and the refresh tokens of each.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::{refresh_tokens, revocations, sessions, users};

mod statements;
pub use statements::{QuickRotation, Verified, open, rotate_quick};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub refresh_delivery: String,
}

pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub refresh_delivery: &'a str,
    /// How the login was authenticated (`pwd`, `pwd otp`, ...).
    pub amr: &'a str,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

#[derive(Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct NewRefresh<'a> {
    pub id: Uuid,
    pub session_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub token_hash: &'a [u8],
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The refresh token with this hash and its session.
pub async fn find_refresh(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<(RefreshRow, SessionRow)>> {
    refresh_tokens::table
        .inner_join(sessions::table)
        .filter(refresh_tokens::token_hash.eq(hash))
        .select((RefreshRow::as_select(), SessionRow::as_select()))
        .first(conn)
        .await
        .optional()
}

/// Lock a session's row for the rest of the transaction (before any of its tokens).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    sessions::table
        .find(id)
        .select(sessions::id)
        .for_update()
        .load::<Uuid>(conn)
        .await
        .map(drop)
}

/// The refresh token with this hash and its session, both locked for the rest of the
/// transaction: concurrent refreshes with one token queue here, and only the first finds
/// it unspent.
pub async fn find_refresh_for_update(
    conn: &mut AsyncPgConnection,
    hash: &[u8],
) -> QueryResult<Option<(RefreshRow, SessionRow)>> {
    refresh_tokens::table
        .inner_join(sessions::table)
        .filter(refresh_tokens::token_hash.eq(hash))
        .select((RefreshRow::as_select(), SessionRow::as_select()))
        .for_update()
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<SessionRow>> {
    sessions::table
        .find(id)
        .select(SessionRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user's sessions that are neither revoked nor expired (absolutely or by idling).
/// A user's live sessions, newest first (ids are UUIDv7, so by id), after `before` if
/// given; at most `limit` rows.
pub async fn list_live(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
    idle: chrono::Duration,
    before: Option<Uuid>,
    limit: i64,
) -> QueryResult<Vec<SessionRow>> {
    let mut query = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::last_used_at.gt(now - idle))
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(sessions::id.lt(before));
    }
    query
        .order(sessions::id.desc())
        .limit(limit)
        .select(SessionRow::as_select())
        .load(conn)
        .await
}

/// The user's live sessions beyond the newest `keep`, newest first.
pub async fn live_beyond(
    conn: &mut AsyncPgConnection,
    user_id: Uuid,
    now: DateTime<Utc>,
    idle: chrono::Duration,
    keep: i64,
) -> QueryResult<Vec<Uuid>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(sessions::last_used_at.gt(now - idle))
        .order(sessions::id.desc())
        .offset(keep)
        .select(sessions::id)
        .load(conn)
        .await
}

/// Which sessions to revoke.
pub enum Revoke<'a> {
    /// These (the ones still live).
    These(&'a [Uuid]),
    /// Every live session of a user, but `except`.
    AllOf { user_id: Uuid, except: Option<Uuid> },
}

/// Revoke sessions that are still live, in one statement; returns the ids revoked (so
/// repeating a revocation is harmless and says it did nothing).
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    which: Revoke<'_>,
    reason: &str,
    at: DateTime<Utc>,
) -> QueryResult<Vec<Uuid>> {
    let live = diesel::update(sessions::table)
        .filter(sessions::revoked_at.is_null())
        .into_boxed();
    let matching = match which {
        Revoke::These(ids) => live.filter(sessions::id.eq_any(ids)),
        Revoke::AllOf { user_id, except } => live
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::id.ne(except.unwrap_or(Uuid::nil()))),
    };
    matching
        .set((
            sessions::revoked_at.eq(at),
            sessions::revoked_reason.eq(reason),
            sessions::updated_at.eq(at),
        ))
        .returning(sessions::id)
        .get_results(conn)
        .await
}

/// Whether a user's access token is still good: not revoked by its `jti`, its session not
/// revoked nor past its absolute lifetime, and its user neither disabled nor gone.
pub async fn token_is_live(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    user_id: Uuid,
    jti: &str,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let token_revoked = diesel::dsl::exists(
        revocations::table
            .filter(revocations::kind.eq("jti"))
            .filter(revocations::value.eq(jti))
            .filter(revocations::expires_at.gt(now)),
    );
    let found: Option<Uuid> = sessions::table
        .inner_join(users::table)
        .filter(sessions::id.eq(id))
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::revoked_at.is_null())
        .filter(sessions::expires_at.gt(now))
        .filter(users::disabled.eq(false))
        .filter(diesel::dsl::not(token_revoked))
        .select(sessions::id)
        .first(conn)
        .await
        .optional()?;
    Ok(found.is_some())
}
