use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::users;

diesel::define_sql_function!(fn lower(x: Text) -> Text);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    pub display_name: Option<String>,
    pub role: String,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Moved by every change a login must not outlive (see [`bump_epoch`]).
    pub auth_epoch: i64,
    /// When the owner proved the address; `None` while unverified.
    pub email_verified_at: Option<DateTime<Utc>>,
    /// A second factor is enrolled: login answers a challenge instead of tokens.
    pub mfa_enabled: bool,
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub display_name: Option<&'a str>,
    pub role: &'a str,
}

pub async fn insert(conn: &mut AsyncPgConnection, user: NewUser<'_>) -> QueryResult<UserRow> {
    diesel::insert_into(users::table)
        .values(&user)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

/// Look up by email, ignoring case (served by the `users_email_key` index).
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    normalized: &str,
) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(lower(users::email).eq(normalized))
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<UserRow>> {
    users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Move the user's epoch, taking the row lock to the end of the transaction: call it
/// first in a transaction that revokes the user's sessions, so that a login in flight
/// either commits its session before (and the revocation sees it) or finds the epoch moved
/// and opens none. Returns whether the user exists.
pub async fn bump_epoch(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::update(users::table.find(id))
        .set((
            users::auth_epoch.eq(users::auth_epoch + 1),
            users::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// Lock the user's row for the rest of the transaction without changing it: the first lock
/// of a transaction that then takes the user's sessions (the one lock order).
pub async fn lock(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    users::table
        .find(id)
        .select(users::id)
        .for_no_key_update()
        .load::<Uuid>(conn)
        .await
        .map(drop)
}

/// Set a new password hash and move the epoch (see [`bump_epoch`]); every outstanding
/// password reset link of the user is spent with it. Call it in a transaction.
pub async fn set_password_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    hash: &str,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(hash),
            users::auth_epoch.eq(users::auth_epoch + 1),
            users::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await?;
    crate::store::mail::spend_outstanding(conn, id, crate::store::mail::Purpose::PasswordReset)
        .await
        .map(drop)
}

/// Change the address to one just proved (verified as of now).
pub async fn set_verified_email(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    email: &str,
) -> QueryResult<Option<UserRow>> {
    let now = Utc::now();
    diesel::update(users::table.find(id))
        .set((
            users::email.eq(email),
            users::email_verified_at.eq(Some(now)),
            users::updated_at.eq(now),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Replace the hash only if it is still `old` (a rehash on login must not undo a password
/// change that raced it).
pub async fn replace_password_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    old: &str,
    new: &str,
) -> QueryResult<()> {
    diesel::update(users::table.find(id).filter(users::password_hash.eq(old)))
        .set(users::password_hash.eq(new))
        .execute(conn)
        .await
        .map(drop)
}

pub async fn set_display_name(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    name: Option<&str>,
) -> QueryResult<Option<UserRow>> {
    diesel::update(users::table.find(id))
        .set((
            users::display_name.eq(name),
            users::updated_at.eq(Utc::now()),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Filters of the admin user listing.
pub struct UserQuery<'a> {
    /// Lower-cased email prefix.
    pub email_prefix: Option<&'a str>,
    pub role: Option<&'a str>,
    pub disabled: Option<bool>,
    /// Users after this id (the cursor); ids are UUIDv7, so this is creation order.
    pub after: Option<Uuid>,
    pub limit: i64,
}

pub async fn list(conn: &mut AsyncPgConnection, q: UserQuery<'_>) -> QueryResult<Vec<UserRow>> {
    let mut query = users::table.select(UserRow::as_select()).into_boxed();
    if let Some(prefix) = q.email_prefix {
        let escaped = prefix
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        query = query.filter(lower(users::email).like(format!("{escaped}%")));
    }
    if let Some(role) = q.role {
        query = query.filter(users::role.eq(role.to_owned()));
    }
    if let Some(disabled) = q.disabled {
        query = query.filter(users::disabled.eq(disabled));
    }
    if let Some(after) = q.after {
        query = query.filter(users::id.gt(after));
    }
    query.order(users::id.asc()).limit(q.limit).load(conn).await
}

/// Lock every enabled admin (to the end of the transaction), so that two admins demoting
/// each other at once cannot leave none. Returns their ids.
pub async fn lock_active_admins(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Uuid>> {
    users::table
        .filter(users::role.eq("admin"))
        .filter(users::disabled.eq(false))
        .select(users::id)
        .for_update()
        .load(conn)
        .await
}

/// Set role and disabled flag; `bump` also moves the epoch (see [`bump_epoch`]).
pub async fn set_role_and_disabled(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    role: &str,
    disabled: bool,
    bump: bool,
) -> QueryResult<UserRow> {
    diesel::update(users::table.find(id))
        .set((
            users::role.eq(role),
            users::disabled.eq(disabled),
            users::auth_epoch.eq(users::auth_epoch + i64::from(bump)),
            users::updated_at.eq(Utc::now()),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn delete(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::delete(users::table.find(id))
        .execute(conn)
        .await
        .map(|n| n > 0)
}
