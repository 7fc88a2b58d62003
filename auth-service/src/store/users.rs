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

pub async fn set_password_hash(
    conn: &mut AsyncPgConnection,
    id: Uuid,
    hash: &str,
) -> QueryResult<()> {
    diesel::update(users::table.find(id))
        .set((
            users::password_hash.eq(hash),
            users::updated_at.eq(Utc::now()),
        ))
        .execute(conn)
        .await
        .map(drop)
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
