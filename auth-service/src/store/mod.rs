//! Diesel models and queries. Models never derive API traits; the API never sees them.

pub mod audit;
pub mod audit_chain;
pub mod clients;
pub mod keys;
pub mod outbox;
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
