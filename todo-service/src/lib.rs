//! The TODO service: a TODO resource API that validates access tokens without calling the
//! auth service (signature, claims, denylist), and enforces roles and scopes from the claims.

pub mod api;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod schema;
pub mod service;
pub mod startup;
pub mod state;
pub mod store;
