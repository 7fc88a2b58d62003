//! The access-token contract between the auth service and every service that accepts its
//! tokens: the claims, roles and scopes, verification against the published keys (JWKS),
//! and the denylist of revoked tokens with its Redis feed. A service that only verifies
//! tokens needs this crate alone (no HTTP framework, no database); the `openapi` feature
//! makes roles and scopes OpenAPI enums.

pub mod denylist;
pub mod denylist_feed;
pub mod jwks;
pub mod tokens;
pub mod verify;
