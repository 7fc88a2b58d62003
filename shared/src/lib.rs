//! What both services share, in one import. It is three crates: the token contract
//! ([`shared_token`]: claims, verification, JWKS, denylist; enough for a third service that
//! only verifies tokens), the HTTP edge ([`shared_edge`]) and infrastructure
//! ([`shared_infra`]); this crate re-exports them and adds test helpers.

pub use shared_edge::{
    ApiErr, ApiError, FieldError, allow, body, client_ip, cursor, error_set, health, http,
    json_keys, middleware, openapi, page, patterned, problem, ratelimit, server, text,
};
pub use shared_infra::{background, binary, config, db, events, metrics, redis_client, telemetry};
pub use shared_token::{denylist, denylist_feed, jwks, tokens};

/// Token verification, and bearer authentication at the edge.
pub mod verify {
    pub use shared_edge::auth::*;
    pub use shared_token::verify::*;
}

#[cfg(feature = "testing")]
pub mod testing;
