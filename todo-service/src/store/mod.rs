//! Diesel models and queries.

pub mod idempotency;
pub mod todos;
