//! The writes that are one statement each: a login's new session (`open`) and a refresh's
//! rotation (`rotate_quick`), each with its audit event in the same statement. Types of their
//! own with a constant text, so that PostgreSQL prepares each once per connection.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Bytea, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::{NewRefresh, NewSession};
use crate::store::audit::{AuditEntry, PendingRow};

impl NewRefresh<'_> {
    /// `r AS (INSERT INTO refresh_tokens ... SELECT ... FROM <from>)`: this token, written
    /// only if the earlier `WITH` queries named in `from` gave a row.
    fn walk_insert<'b>(
        &'b self,
        mut out: AstPass<'_, 'b, Pg>,
        from: &'static str,
    ) -> QueryResult<()> {
        type SqlUuid = diesel::sql_types::Uuid;
        out.push_sql(
            "r AS (INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, \
             issued_at, expires_at) SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(", ");
        out.push_bind_param::<SqlUuid, _>(&self.session_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.parent_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Bytea, [u8]>(self.token_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.issued_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.expires_at)?;
        out.push_sql(" FROM ");
        out.push_sql(from);
        out.push_sql(" RETURNING id)");
        Ok(())
    }
}

/// What a login verified about its user: a session is opened only while the user row
/// still says exactly this.
pub struct Verified<'a> {
    pub auth_epoch: i64,
    pub role: &'a str,
}

/// A new session with its first refresh token and the audit event that records it, in one
/// statement: a login writes with one round trip and no explicit transaction. The statement
/// first reads the user row under a share lock and writes nothing unless it is still enabled
/// with the verified epoch and role; a change that revokes the user's sessions holds the
/// row's update lock until it commits (`users::bump_epoch`), so either the change sees this
/// session or this statement sees the change. Returns whether the session was opened.
pub async fn open(
    conn: &mut AsyncPgConnection,
    verified: &Verified<'_>,
    session: &NewSession<'_>,
    refresh: &NewRefresh<'_>,
    audit: &AuditEntry<'_>,
) -> QueryResult<bool> {
    let audit = PendingRow::new(audit);
    let rows = Open {
        verified,
        session,
        refresh,
        audit: &audit,
    }
    .execute(conn)
    .await?;
    match rows {
        0 => Ok(false),
        rows => {
            crate::store::audit::recorded(rows)?;
            audit.count();
            Ok(true)
        }
    }
}

/// `open`'s statement; a type of its own so that PostgreSQL prepares it once per
/// connection. The session and token rows are inserted by data-modifying `WITH` queries;
/// the foreign key from token to session is checked at the end of the statement.
struct Open<'a> {
    verified: &'a Verified<'a>,
    session: &'a NewSession<'a>,
    refresh: &'a NewRefresh<'a>,
    audit: &'a PendingRow<'a>,
}

impl QueryFragment<Pg> for Open<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        type SqlUuid = diesel::sql_types::Uuid;
        let (v, s, r) = (self.verified, self.session, self.refresh);
        out.push_sql("WITH u AS (SELECT id FROM users WHERE id = ");
        out.push_bind_param::<SqlUuid, _>(&s.user_id)?;
        out.push_sql(" AND auth_epoch = ");
        out.push_bind_param::<diesel::sql_types::BigInt, _>(&v.auth_epoch)?;
        out.push_sql(" AND role = ");
        out.push_bind_param::<Text, str>(v.role)?;
        out.push_sql(" AND NOT disabled FOR SHARE), ");
        // The session, its token and the event are each written once per matching user:
        // all three, or nothing.
        out.push_sql(
            "s AS (INSERT INTO sessions (id, user_id, created_at, last_used_at, \
             expires_at, user_agent, ip, refresh_delivery, amr) SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&s.id)?;
        out.push_sql(", u.id, ");
        out.push_bind_param::<Timestamptz, _>(&s.created_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&s.last_used_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&s.expires_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&s.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&s.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(s.refresh_delivery)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(s.amr)?;
        out.push_sql(" FROM u), ");
        r.walk_insert(out.reborrow(), "u")?;
        out.push_sql(" ");
        self.audit.walk_insert(out.reborrow(), Some("u"))
    }
}

impl QueryId for Open<'_> {
    type QueryId = Open<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// The usual refresh, whole, in one statement and without an explicit transaction: when
/// the presented token is unspent and unexpired, its session live and its user enabled,
/// the token is spent, its successor written (expiring with the idle lifetime, never after
/// the session), the session touched and the event recorded; the user (for the access
/// token) and the successor's expiry come back. Otherwise nothing is written and `None`
/// comes back: the caller then looks closer in a transaction (a spent token is reuse).
///
/// The session row is locked first (as everywhere: session, then its token), and every
/// condition is checked again on the newest row versions when a concurrent change made
/// the statement wait: of concurrent refreshes with one token, the first spends it and the
/// others find it spent; a revocation that commits first leaves the session unusable.
pub struct QuickRotation<'a> {
    pub session_id: Uuid,
    pub presented_hash: &'a [u8],
    pub successor_id: Uuid,
    pub successor_hash: &'a [u8],
    pub at: DateTime<Utc>,
    pub idle: chrono::Duration,
}

pub async fn rotate_quick(
    conn: &mut AsyncPgConnection,
    rotation: &QuickRotation<'_>,
    audit: &AuditEntry<'_>,
) -> QueryResult<Option<(crate::store::users::UserRow, DateTime<Utc>, String)>> {
    let audit = PendingRow::new(audit);
    let idle_cutoff = rotation.at - rotation.idle;
    let idle_expiry = rotation.at + rotation.idle;
    let rotated = RotateQuick {
        rotation,
        idle_cutoff,
        idle_expiry,
        audit: &audit,
    }
    .get_result(conn)
    .await
    .optional()?;
    if rotated.is_some() {
        audit.count();
    }
    Ok(rotated)
}

struct RotateQuick<'a> {
    rotation: &'a QuickRotation<'a>,
    idle_cutoff: DateTime<Utc>,
    idle_expiry: DateTime<Utc>,
    audit: &'a PendingRow<'a>,
}

impl QueryFragment<Pg> for RotateQuick<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        type SqlUuid = diesel::sql_types::Uuid;
        let rot = self.rotation;
        out.push_sql("WITH s AS (SELECT id, user_id, expires_at, amr FROM sessions WHERE id = ");
        out.push_bind_param::<SqlUuid, _>(&rot.session_id)?;
        out.push_sql(" AND revoked_at IS NULL AND expires_at > ");
        out.push_bind_param::<Timestamptz, _>(&rot.at)?;
        out.push_sql(" AND last_used_at > ");
        out.push_bind_param::<Timestamptz, _>(&self.idle_cutoff)?;
        out.push_sql(
            " FOR UPDATE), t AS (SELECT refresh_tokens.id FROM refresh_tokens, s \
             WHERE refresh_tokens.token_hash = ",
        );
        out.push_bind_param::<Bytea, [u8]>(rot.presented_hash)?;
        out.push_sql(
            " AND refresh_tokens.session_id = s.id AND refresh_tokens.used_at IS NULL \
             AND refresh_tokens.expires_at > ",
        );
        out.push_bind_param::<Timestamptz, _>(&rot.at)?;
        out.push_sql(
            " FOR UPDATE OF refresh_tokens), u AS (SELECT users.id, users.email, \
             users.password_hash, users.display_name, users.role, users.disabled, \
             users.created_at, users.updated_at, users.auth_epoch, users.email_verified_at, \
             users.mfa_enabled FROM users, s \
             WHERE users.id = s.user_id AND NOT users.disabled), \
             spent AS (UPDATE refresh_tokens SET used_at = ",
        );
        out.push_bind_param::<Timestamptz, _>(&rot.at)?;
        out.push_sql(", updated_at = ");
        out.push_bind_param::<Timestamptz, _>(&rot.at)?;
        out.push_sql(
            " FROM t, u WHERE refresh_tokens.id = t.id AND refresh_tokens.used_at IS NULL \
             RETURNING refresh_tokens.id), touched AS (UPDATE sessions SET last_used_at = ",
        );
        out.push_bind_param::<Timestamptz, _>(&rot.at)?;
        out.push_sql(", updated_at = ");
        out.push_bind_param::<Timestamptz, _>(&rot.at)?;
        out.push_sql(
            " FROM spent WHERE sessions.id = (SELECT id FROM s) RETURNING sessions.id), \
             r AS (INSERT INTO refresh_tokens (id, session_id, parent_id, token_hash, \
             issued_at, expires_at) SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&rot.successor_id)?;
        out.push_sql(", s.id, spent.id, ");
        out.push_bind_param::<Bytea, [u8]>(rot.successor_hash)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&rot.at)?;
        out.push_sql(", LEAST(");
        out.push_bind_param::<Timestamptz, _>(&self.idle_expiry)?;
        out.push_sql(", s.expires_at) FROM s, spent, touched RETURNING expires_at), a AS (");
        // The event only with the successor written.
        self.audit.walk_insert(out.reborrow(), Some("r"))?;
        out.push_sql(
            " RETURNING 1) SELECT u.id, u.email, u.password_hash, u.display_name, u.role, \
             u.disabled, u.created_at, u.updated_at, u.auth_epoch, u.email_verified_at, \
             u.mfa_enabled, r.expires_at, s.amr FROM u, r, a, s",
        );
        Ok(())
    }
}

impl QueryId for RotateQuick<'_> {
    type QueryId = RotateQuick<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl diesel::query_builder::Query for RotateQuick<'_> {
    type SqlType = (crate::schema::users::SqlType, Timestamptz, Text);
}
