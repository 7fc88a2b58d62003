//! Everything a request handler may need, built once at start.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use shared::db::PgPool;
use shared::ratelimit::RateLimiter;
use shared::verify::Verifier;

use crate::config::Settings;
use crate::crypto::hashing::PasswordHashing;
use crate::crypto::keyring::KeyRing;
use crate::service::events::EventPublisher;
use crate::service::mail::Mailer;
use crate::service::revocation::RevocationPublisher;

pub struct AppState {
    pub settings: Settings,
    /// Set when shutdown begins: readiness answers 503 while requests are still served.
    pub drain: shared::server::Drain,
    pub pool: PgPool,
    pub redis: ConnectionManager,
    pub hashing: PasswordHashing,
    pub keys: Arc<KeyRing>,
    pub revocations: Arc<RevocationPublisher>,
    pub events: Arc<EventPublisher>,
    pub mail: Mailer,
    /// Seals secrets at rest (TOTP secrets) with the key-encryption key.
    pub secrets: crate::crypto::keys::KeyCipher,
    pub limiter: RateLimiter,
    /// Checks signatures and claims of access tokens with this service's own keys.
    pub verifier: Verifier,
    /// The WebAuthn relying party (passkeys).
    pub webauthn: webauthn_rs::Webauthn,
}

impl AppState {
    pub fn access_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.settings.auth.access_token_ttl_secs)
    }

    pub fn idle_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.settings.auth.session_idle_ttl_secs)
    }

    pub fn absolute_ttl(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.settings.auth.session_absolute_ttl_secs)
    }
}
