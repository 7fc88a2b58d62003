//! Everything a request handler may need, built once at start (by `startup`).

use std::sync::Arc;

use redis::aio::ConnectionManager;
use shared::db::PgPool;
use shared::denylist_feed::Denylist;
use shared::jwks::JwksKeySource;
use shared::ratelimit::RateLimiter;
use shared::verify::TokenAuthenticator;

use crate::config::Settings;

pub struct AppState {
    pub settings: Settings,
    /// Set when shutdown begins: readiness answers 503 while requests are still served.
    pub drain: shared::server::Drain,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub keys: Arc<JwksKeySource>,
    pub denylist: Arc<Denylist>,
    pub authenticator: Arc<TokenAuthenticator>,
    pub limiter: RateLimiter,
}
