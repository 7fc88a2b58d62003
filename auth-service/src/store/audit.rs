//! The audit log: append-only, written in the same transaction as the event it records.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use crate::schema::audit_log;
use crate::service::RequestMeta;

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

#[derive(Insertable)]
#[diesel(table_name = audit_log)]
struct NewAuditRow<'a> {
    event: &'a str,
    actor_id: Option<Uuid>,
    subject_id: Option<Uuid>,
    session_id: Option<Uuid>,
    ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    request_id: Option<&'a str>,
    details: &'a Value,
}

pub async fn record(conn: &mut AsyncPgConnection, entry: AuditEntry<'_>) -> QueryResult<()> {
    shared::metrics::auth_event(entry.event);
    diesel::insert_into(audit_log::table)
        .values(NewAuditRow {
            event: entry.event,
            actor_id: entry.actor_id,
            subject_id: entry.subject_id,
            session_id: entry.session_id,
            ip: Some(&entry.meta.ip),
            user_agent: entry.meta.user_agent.as_deref(),
            request_id: Some(&entry.meta.request_id),
            details: &entry.details,
        })
        .execute(conn)
        .await
        .map(drop)
}
