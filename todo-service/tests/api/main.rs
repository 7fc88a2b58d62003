//! End-to-end tests: the real auth service issues tokens, the real TODO service verifies
//! them, against real PostgreSQL and Redis.

mod helpers;

mod access;
mod admin_effects;
mod crud;
mod idempotency;
mod jwks;
mod openapi;
mod pagination;
mod redis_outage;
mod revocation;
mod service_clients;
mod shutdown;
