//! The audit log: append-only, each row chained to the previous one by SHA-256 so that
//! tampering is detectable. An event is written (to `audit_pending`) in the same
//! transaction as what it records, and chained into `audit_log` within a second
//! ([`crate::store::audit_chain::chain_pending`]).

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Bytea, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::domain::RequestMeta;
use crate::schema::audit_log;

/// Event names, as stored and as the admin API filters them.
pub mod event {
    pub const SIGNUP: &str = "signup";
    pub const LOGIN_SUCCEEDED: &str = "login_succeeded";
    pub const LOGIN_FAILED: &str = "login_failed";
    pub const REFRESH: &str = "refresh";
    pub const REFRESH_REUSE_DETECTED: &str = "refresh_reuse_detected";
    pub const LOGOUT: &str = "logout";
    pub const LOGOUT_ALL: &str = "logout_all";
    pub const SESSION_REVOKED: &str = "session_revoked";
    pub const PASSWORD_CHANGED: &str = "password_changed";
    pub const PASSWORD_CHANGE_FAILED: &str = "password_change_failed";
    pub const PROFILE_UPDATED: &str = "profile_updated";
    pub const ROLE_CHANGED: &str = "role_changed";
    pub const USER_DISABLED: &str = "user_disabled";
    pub const USER_ENABLED: &str = "user_enabled";
    pub const USER_DELETED: &str = "user_deleted";
    pub const ADMIN_CREATED: &str = "admin_created";
    pub const CLIENT_CREATED: &str = "client_created";
    pub const CLIENT_DELETED: &str = "client_deleted";
    pub const CLIENT_AUTH_FAILED: &str = "client_auth_failed";
    pub const TOKEN_ISSUED: &str = "client_token_issued";
    pub const TOKEN_REVOKED: &str = "token_revoked";
    pub const EMAIL_VERIFIED: &str = "email_verified";
    pub const EMAIL_CHANGE_REQUESTED: &str = "email_change_requested";
    pub const EMAIL_CHANGED: &str = "email_changed";
    pub const PASSWORD_RESET: &str = "password_reset";
    pub const MFA_ENABLED: &str = "mfa_enabled";
    pub const MFA_DISABLED: &str = "mfa_disabled";
    pub const MFA_RESET: &str = "mfa_reset";
    pub const MFA_CHALLENGED: &str = "mfa_challenged";
    pub const PASSKEY_ADDED: &str = "passkey_added";
    pub const PASSKEY_REMOVED: &str = "passkey_removed";
    pub const REAUTH_FAILED: &str = "reauth_failed";
}

/// One event. Never a password, hash or token in `details`.
pub struct AuditEntry<'a> {
    pub event: &'static str,
    pub actor_id: Option<Uuid>,
    pub subject_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub meta: &'a RequestMeta,
    pub details: Value,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub id: i64,
    pub occurred_at: DateTime<Utc>,
    pub event: String,
    pub actor_id: Option<Uuid>,
    pub subject_id: Option<Uuid>,
    pub session_id: Option<Uuid>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub details: Value,
    pub prev_hash: Option<Vec<u8>>,
    pub hash: Option<Vec<u8>>,
}

/// The hash of a row: SHA-256 over the previous hash and the row's content
/// ([`chain_content`]). The chainer computes it in PostgreSQL (`sha256(prev || content)`,
/// with the content written with the event); `audit verify` recomputes it here.
pub(crate) fn chain_hash(prev: Option<&[u8]>, content: &str) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(prev.unwrap_or_default());
    hasher.update(content.as_bytes());
    hasher.finalize().to_vec()
}

/// A row's content, canonically encoded (serde_json sorts object keys, as reading `details`
/// back does).
#[expect(clippy::too_many_arguments, reason = "one argument per hashed column")]
pub(crate) fn chain_content(
    occurred_at: DateTime<Utc>,
    event: &str,
    actor_id: Option<Uuid>,
    subject_id: Option<Uuid>,
    session_id: Option<Uuid>,
    ip: Option<&str>,
    user_agent: Option<&str>,
    request_id: Option<&str>,
    details: &Value,
) -> String {
    json!([
        occurred_at.timestamp_micros(),
        event,
        actor_id,
        subject_id,
        session_id,
        ip,
        user_agent,
        request_id,
        details
    ])
    .to_string()
}

/// A failed login (`login_failed`, no actor): of `subject` when known, with `details`.
pub async fn login_failed(
    conn: &mut AsyncPgConnection,
    subject: Option<Uuid>,
    meta: &RequestMeta,
    details: serde_json::Value,
) -> QueryResult<()> {
    record(
        conn,
        AuditEntry {
            event: event::LOGIN_FAILED,
            actor_id: None,
            subject_id: subject,
            session_id: None,
            meta,
            details,
        },
    )
    .await
}

/// Record one event: a row in `audit_pending`, chained into the log within a second
/// ([`crate::store::audit_chain::chain_pending`]). One statement, inside the caller's
/// transaction when there is one, so the event is recorded exactly when what it records
/// commits; it takes no lock another request waits on.
pub async fn record(conn: &mut AsyncPgConnection, entry: AuditEntry<'_>) -> QueryResult<()> {
    let row = PendingRow::new(&entry);
    recorded(Append(&row).execute(conn).await?)?;
    row.count();
    Ok(())
}

/// What a statement ending in the event's insert reports: one row, or the event (and what
/// it records) was not written.
pub(crate) fn recorded(rows: usize) -> QueryResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(diesel::result::Error::NotFound)
    }
}

/// An event ready to record, with the content its chain hash will cover.
pub(crate) struct PendingRow<'a> {
    content: String,
    occurred_at: DateTime<Utc>,
    event: &'static str,
    actor_id: Option<Uuid>,
    subject_id: Option<Uuid>,
    session_id: Option<Uuid>,
    ip: &'a str,
    user_agent: Option<&'a str>,
    request_id: &'a str,
    details: &'a Value,
}

impl<'a> PendingRow<'a> {
    pub(crate) fn new(entry: &'a AuditEntry<'a>) -> Self {
        let meta = entry.meta;
        // Stored with microsecond precision: hash exactly what `audit verify` reads back.
        let occurred_at =
            DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default();
        let content = chain_content(
            occurred_at,
            entry.event,
            entry.actor_id,
            entry.subject_id,
            entry.session_id,
            Some(&meta.ip),
            meta.user_agent.as_deref(),
            Some(&meta.request_id),
            &entry.details,
        );
        Self {
            content,
            occurred_at,
            event: entry.event,
            actor_id: entry.actor_id,
            subject_id: entry.subject_id,
            session_id: entry.session_id,
            ip: &meta.ip,
            user_agent: meta.user_agent.as_deref(),
            request_id: &meta.request_id,
            details: &entry.details,
        }
    }

    /// Count the event in `auth_events_total`, once it is written.
    pub(crate) fn count(&self) {
        shared::metrics::auth_event(self.event);
    }

    /// `INSERT INTO audit_pending ... SELECT ... [FROM <from>]`: the event, written once
    /// for each row of `from` (the caller's earlier `WITH` queries: the event is recorded
    /// only if what it records was written), or once without.
    pub(crate) fn walk_insert<'b>(
        &'b self,
        mut out: AstPass<'_, 'b, Pg>,
        from: Option<&'static str>,
    ) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO audit_pending (occurred_at, event, actor_id, subject_id, session_id, \
             ip, user_agent, request_id, details, content) SELECT ",
        );
        out.push_bind_param::<Timestamptz, _>(&self.occurred_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(self.event)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<diesel::sql_types::Uuid>, _>(&self.actor_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<diesel::sql_types::Uuid>, _>(&self.subject_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<diesel::sql_types::Uuid>, _>(&self.session_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(self.ip)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.user_agent)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, str>(self.request_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Jsonb, Value>(self.details)?;
        out.push_sql(", ");
        out.push_bind_param::<Bytea, [u8]>(self.content.as_bytes())?;
        if let Some(from) = from {
            out.push_sql(" FROM ");
            out.push_sql(from);
        }
        Ok(())
    }
}

/// The insert on its own. A statement type of its own (not `sql_query`), so that
/// PostgreSQL prepares it once per connection.
struct Append<'a>(&'a PendingRow<'a>);

impl QueryFragment<Pg> for Append<'_> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_insert(out, None)
    }
}

impl QueryId for Append<'_> {
    type QueryId = Append<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// Filters of the admin audit listing.
pub struct AuditQuery<'a> {
    pub user_id: Option<Uuid>,
    pub event: Option<&'a str>,
    /// Rows older than this id (the cursor).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// Newest first. `user_id` matches the subject or the actor.
pub async fn list(conn: &mut AsyncPgConnection, q: AuditQuery<'_>) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_log::table.select(AuditRow::as_select()).into_boxed();
    if let Some(user) = q.user_id {
        query = query.filter(
            audit_log::subject_id
                .eq(user)
                .or(audit_log::actor_id.eq(user)),
        );
    }
    if let Some(event) = q.event {
        query = query.filter(audit_log::event.eq(event.to_owned()));
    }
    if let Some(before) = q.before_id {
        query = query.filter(audit_log::id.lt(before));
    }
    query
        .order(audit_log::id.desc())
        .limit(q.limit)
        .load(conn)
        .await
}
