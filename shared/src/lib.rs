//! What both services share: problem+json errors, the HTTP edge and server loop, config,
//! telemetry, metrics, health, and access-token types and verification.

pub mod allow;
pub mod background;
pub mod body;
pub mod client_ip;
pub mod config;
pub mod cursor;
pub mod db;
pub mod denylist;
pub mod denylist_feed;
pub mod events;
pub mod health;
pub mod http;
pub mod json_keys;
pub mod jwks;
pub mod metrics;
pub mod middleware;
pub mod openapi;
pub mod page;
pub mod problem;
pub mod ratelimit;
pub mod redis_client;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;
pub mod tokens;
pub mod verify;

pub use problem::{ApiErr, ApiError, FieldError};
