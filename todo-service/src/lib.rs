//! The TODO service: a TODO resource API that validates access tokens without calling the
//! auth service, and enforces roles and scopes from the claims.

pub mod config;
pub mod startup;
