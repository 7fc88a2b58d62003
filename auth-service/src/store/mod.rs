//! Diesel models and queries. Models never derive API traits; the API never sees them.

/// `unpublished` and `mark_published` for a table written as an outbox (`id`,
/// `published_at`, `updated_at`): rows not yet published, oldest first, and marking them
/// once they are. Diesel queries are typed by table, so one macro serves both outboxes.
macro_rules! outbox_queries {
    ($table:ident, $row:ty) => {
        pub async fn unpublished(
            conn: &mut AsyncPgConnection,
            limit: i64,
        ) -> QueryResult<Vec<$row>> {
            $table::table
                .filter($table::published_at.is_null())
                .order($table::id.asc())
                .limit(limit)
                .select(<$row>::as_select())
                .load(conn)
                .await
        }

        pub async fn mark_published(
            conn: &mut AsyncPgConnection,
            ids: &[i64],
            at: DateTime<Utc>,
        ) -> QueryResult<()> {
            diesel::update($table::table.filter($table::id.eq_any(ids)))
                .set(($table::published_at.eq(at), $table::updated_at.eq(at)))
                .execute(conn)
                .await
                .map(drop)
        }
    };
}

pub mod audit;
pub mod audit_chain;
pub mod clients;
pub mod keys;
pub mod mail;
pub mod mfa;
pub mod outbox;
pub mod passkeys;
pub mod revocations;
pub mod sessions;
pub mod users;

use diesel::result::{DatabaseErrorKind, Error};

/// The constraint a unique violation hit, if that is what `err` is.
pub fn unique_violation(err: &Error) -> Option<&str> {
    match err {
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => info.constraint_name(),
        _ => None,
    }
}
