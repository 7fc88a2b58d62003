//! The auth service: signup and login with argon2id, short-lived JWT access tokens signed
//! with an asymmetric key and published as JWKS, rotating refresh tokens with reuse
//! detection, sessions, and revocation published to a Redis denylist.

pub mod api;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod schema;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
