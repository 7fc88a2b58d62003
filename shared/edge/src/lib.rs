//! The HTTP edge both services use: problem+json errors, the edge middleware and server
//! loop, client addresses behind proxies, rate limits, request bodies checked against the
//! OpenAPI schema, the exact OpenAPI document, health, and bearer authentication.

pub mod allow;
pub mod auth;
pub mod body;
pub mod client_ip;
pub mod cursor;
pub mod health;
pub mod http;
pub mod json_keys;
pub mod middleware;
pub mod openapi;
pub mod page;
pub mod patterned;
pub mod problem;
pub mod ratelimit;
pub mod server;
pub mod text;

pub use problem::{ApiErr, ApiError, FieldError};
