//! Infrastructure both services use: configuration (files and environment), PostgreSQL
//! pools and migrations, Redis connections, telemetry and metrics, background jobs, and the
//! events the auth service publishes.

pub mod background;
pub mod binary;
pub mod config;
pub mod db;
pub mod events;
pub mod metrics;
pub mod redis_client;
pub mod telemetry;
