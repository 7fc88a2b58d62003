//! Events the auth service publishes for other services, on the Redis stream
//! `{prefix}events`. Each entry has a `kind` and a JSON `payload`. Delivery is at least
//! once: consumers must be idempotent.
//!
//! - `user_deleted`, payload `{"user_id": "<uuid>"}`: the account is gone; services delete
//!   what they keep for that owner.

use serde::{Deserialize, Serialize};

pub const USER_DELETED: &str = "user_deleted";

/// The stream's key.
pub fn stream_key(prefix: &str) -> String {
    format!("{prefix}events")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserDeleted {
    pub user_id: String,
}
