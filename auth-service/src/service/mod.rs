//! Use cases as plain async functions over the app state.

pub mod admin;
pub mod audit_seal;
pub mod auth;
pub mod clients;
pub mod events;
pub mod mail;
pub mod mfa;
pub mod oauth;
pub mod passkeys;
pub mod purge;
pub mod recovery;
pub mod revocation;
pub mod throttle;
pub mod users;
