//! The auth service's settings: defaults, then the TOML file named by `AUTH_CONFIG_FILE` (or
//! `--config`), then `AUTH_*` environment variables. Every variable, with its default and
//! meaning, is listed in `docs/configuration.md` (a test checks that list against these
//! types), with the HTTP settings of [`shared::config::HttpSettings`] under `AUTH_`.

use std::path::PathBuf;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shared::config::{ConfigError, HttpSettings, comma_list};
use shared::ratelimit::Rate;

pub const PREFIX: &str = "AUTH_";

/// Signing algorithms the service can issue with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SigningAlg {
    EdDSA,
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }

    pub fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            SigningAlg::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            SigningAlg::ES256 => jsonwebtoken::Algorithm::ES256,
            SigningAlg::RS256 => jsonwebtoken::Algorithm::RS256,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "EdDSA" => Some(SigningAlg::EdDSA),
            "ES256" => Some(SigningAlg::ES256),
            "RS256" => Some(SigningAlg::RS256),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    pub database_url: SecretString,
    pub database_pool_size: usize,
    pub redis_url: SecretString,
    pub redis_prefix: String,
    pub issuer: String,
    #[serde(deserialize_with = "comma_list")]
    pub audiences: Vec<String>,
    pub audience: String,
    pub signing_alg: SigningAlg,
    pub key_encryption_key: SecretString,
    pub audit_hmac_key: SecretString,
    pub key_publish_lead_secs: i64,
    pub jwks_max_age_secs: u64,
    pub access_token_ttl_secs: i64,
    pub session_idle_ttl_secs: i64,
    pub session_absolute_ttl_secs: i64,
    pub max_sessions_per_user: u32,
    pub purge_interval_secs: u64,
    pub clock_leeway_secs: i64,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hash_concurrency: usize,
    pub hash_queue: usize,
    pub cookie_secure: bool,
    pub cookie_name: String,
    #[serde(deserialize_with = "comma_list")]
    pub csrf_allowed_origins: Vec<String>,
    pub rate_login_ip: Rate,
    pub rate_login_account: Rate,
    pub rate_signup_ip: Rate,
    pub rate_refresh_ip: Rate,
    pub rate_refresh_session: Rate,
    pub rate_token_ip: Rate,
    pub rate_token_client: Rate,
    pub rate_password_change: Rate,
    pub throttle_ip_failures: u32,
    pub throttle_account_failures: u32,
    pub throttle_max_secs: u64,
    pub throttle_window_secs: u64,
    pub smtp_url: SecretString,
    pub mail_from: String,
    pub public_app_url: String,
    pub mail_max_attempts: u32,
    /// One mail's whole SMTP exchange, at most (lettre bounds only each step).
    pub mail_send_timeout_secs: u64,
    pub verify_token_ttl_secs: i64,
    pub reset_token_ttl_secs: i64,
    pub require_verified_email: bool,
    pub rate_reset_ip: Rate,
    pub rate_reset_account: Rate,
    pub rate_reset_confirm_ip: Rate,
    pub rate_verify_ip: Rate,
    pub rate_verify_resend: Rate,
    pub rate_email_change: Rate,
    pub totp_issuer: String,
    pub rate_mfa_change: Rate,
    pub reauth_max_age_secs: i64,
    /// The WebAuthn relying party: a domain the SPA's host is or ends with. Empty: the host
    /// of `public_app_url` (`localhost` when that is an IP address: browsers take none).
    pub webauthn_rp_id: String,
    /// Origins a passkey ceremony may come from. Empty: the origin of `public_app_url`
    /// (with `localhost` for an IP address, as above).
    #[serde(deserialize_with = "comma_list")]
    pub webauthn_origins: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            database_url: SecretString::from(""),
            database_pool_size: 16,
            redis_url: SecretString::from(""),
            redis_prefix: "authsvc:".into(),
            issuer: "http://127.0.0.1:8080".into(),
            audiences: vec!["auth-service".into(), "todo-service".into()],
            audience: "auth-service".into(),
            signing_alg: SigningAlg::EdDSA,
            key_encryption_key: SecretString::from(""),
            audit_hmac_key: SecretString::from(""),
            key_publish_lead_secs: 600,
            jwks_max_age_secs: 300,
            access_token_ttl_secs: 900,
            session_idle_ttl_secs: 14 * 24 * 3600,
            session_absolute_ttl_secs: 30 * 24 * 3600,
            max_sessions_per_user: 100,
            purge_interval_secs: 60,
            clock_leeway_secs: 30,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            hash_queue: 32,
            cookie_secure: true,
            cookie_name: "refresh_token".into(),
            csrf_allowed_origins: Vec::new(),
            rate_login_ip: Rate::new(30, 60),
            rate_login_account: Rate::new(10, 60),
            rate_signup_ip: Rate::new(20, 600),
            rate_refresh_ip: Rate::new(120, 60),
            rate_refresh_session: Rate::new(30, 60),
            rate_token_ip: Rate::new(120, 60),
            rate_token_client: Rate::new(60, 60),
            rate_password_change: Rate::new(5, 900),
            throttle_ip_failures: 5,
            throttle_account_failures: 20,
            throttle_max_secs: 900,
            throttle_window_secs: 900,
            smtp_url: SecretString::from(""),
            mail_from: "Auth service <no-reply@localhost>".into(),
            public_app_url: "http://127.0.0.1:5173".into(),
            mail_max_attempts: 30,
            mail_send_timeout_secs: 60,
            verify_token_ttl_secs: 24 * 3600,
            reset_token_ttl_secs: 1800,
            require_verified_email: false,
            rate_reset_ip: Rate::new(10, 900),
            rate_reset_account: Rate::new(3, 900),
            rate_reset_confirm_ip: Rate::new(20, 900),
            rate_verify_ip: Rate::new(30, 900),
            rate_verify_resend: Rate::new(3, 900),
            rate_email_change: Rate::new(5, 900),
            totp_issuer: "Auth service".into(),
            rate_mfa_change: Rate::new(10, 900),
            reauth_max_age_secs: 900,
            webauthn_rp_id: String::new(),
            webauthn_origins: Vec::new(),
        }
    }
}

/// Everything the service reads from config.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub auth: AuthSettings,
}

impl Settings {
    /// Load and validate. Unknown `AUTH_*` variables are returned for a warning once
    /// telemetry is up.
    pub fn load(file: Option<PathBuf>) -> Result<(Self, Vec<String>), ConfigError> {
        let (http, auth, unknown) = shared::config::load(PREFIX, file, "127.0.0.1:8080")?;
        let settings = Self { http, auth };
        settings.validate()?;
        Ok((settings, unknown))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate(PREFIX)?;
        let a = &self.auth;
        let err = |key: &str, msg: &str| Err(ConfigError::var(PREFIX, key, msg));
        if a.database_url.expose_secret().is_empty() {
            return err("database_url", "is required (a postgres:// URL)");
        }
        if a.redis_url.expose_secret().is_empty() {
            return err("redis_url", "is required (a redis:// URL)");
        }
        if self.key_encryption_key().is_none() {
            return err(
                "key_encryption_key",
                "is required: base64 of 32 random bytes (openssl rand -base64 32)",
            );
        }
        if self.audit_hmac_key().is_none() {
            return err(
                "audit_hmac_key",
                "is required: base64 of 32 random bytes (openssl rand -base64 32), kept off the database host",
            );
        }
        if a.issuer.is_empty() {
            return err("issuer", "is required");
        }
        if a.audiences.is_empty() || !a.audiences.contains(&a.audience) {
            return err("audiences", "must list at least AUTH_AUDIENCE");
        }
        if a.access_token_ttl_secs < 60 || a.access_token_ttl_secs > 24 * 3600 {
            return err("access_token_ttl_secs", "must be between 60 and 86400");
        }
        if a.session_idle_ttl_secs < 60 {
            return err("session_idle_ttl_secs", "must be at least 60");
        }
        if a.session_absolute_ttl_secs < a.session_idle_ttl_secs {
            return err(
                "session_absolute_ttl_secs",
                "must be at least AUTH_SESSION_IDLE_TTL_SECS",
            );
        }
        if !(1..=10_000).contains(&a.max_sessions_per_user) {
            return err("max_sessions_per_user", "must be between 1 and 10000");
        }
        if !(0..=shared::verify::MAX_LEEWAY_SECS).contains(&a.clock_leeway_secs) {
            return err("clock_leeway_secs", "must be between 0 and 300");
        }
        // OWASP's minimum for argon2id is m=19 MiB with t=2, or m=12 MiB with t=3, ...;
        // refuse anything weaker than the cheapest of its listed combinations.
        if a.argon2_memory_kib < 7 * 1024 || a.argon2_iterations < 1 || a.argon2_parallelism < 1 {
            return err(
                "argon2_memory_kib",
                "argon2id parameters are below OWASP's minimum (m >= 7168 KiB, t >= 1, p >= 1)",
            );
        }
        if u64::from(a.argon2_memory_kib) * u64::from(a.argon2_iterations) < 19 * 1024 * 2 {
            return err(
                "argon2_iterations",
                "memory x iterations is below OWASP's minimum (19 MiB x 2)",
            );
        }
        if a.hash_concurrency == 0 {
            return err("hash_concurrency", "must be at least 1");
        }
        if a.database_pool_size == 0 {
            return err("database_pool_size", "must be at least 1");
        }
        if a.cookie_name.is_empty()
            || !a
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return err("cookie_name", "must be a plain token");
        }
        if a.throttle_ip_failures == 0 || a.throttle_account_failures == 0 {
            return err(
                "throttle_ip_failures",
                "AUTH_THROTTLE_IP_FAILURES and AUTH_THROTTLE_ACCOUNT_FAILURES must be at least 1",
            );
        }
        if a.throttle_max_secs == 0 || a.throttle_window_secs == 0 {
            return err(
                "throttle_max_secs",
                "AUTH_THROTTLE_MAX_SECS and AUTH_THROTTLE_WINDOW_SECS must be at least 1",
            );
        }
        if a.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return err(
                "mail_from",
                "must be a mailbox: `Name <address>` or `address`",
            );
        }
        let app = a.public_app_url.trim();
        if !(app.starts_with("http://") || app.starts_with("https://")) || app.contains('#') {
            return err(
                "public_app_url",
                "must be the SPA's http(s) URL, without a fragment (mail links go to it)",
            );
        }
        if !a.smtp_url.expose_secret().is_empty()
            && lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(
                a.smtp_url.expose_secret(),
            )
            .is_err()
        {
            return err(
                "smtp_url",
                "must be an SMTP URL: smtp://host:port (plain, or STARTTLS with ?tls=required), smtps://user:password@host:465",
            );
        }
        if let Err(why) = self.webauthn() {
            return err("webauthn_rp_id", &why);
        }
        if !(60..=24 * 3600).contains(&a.reauth_max_age_secs) {
            return err("reauth_max_age_secs", "must be between 60 and 86400");
        }
        // A batch of four, one after another, settles well within the 300 s lease.
        if !(1..=60).contains(&a.mail_send_timeout_secs) {
            return err("mail_send_timeout_secs", "must be between 1 and 60");
        }
        if a.mail_max_attempts == 0 {
            return err("mail_max_attempts", "must be at least 1");
        }
        if !(300..=7 * 24 * 3600).contains(&a.verify_token_ttl_secs) {
            return err("verify_token_ttl_secs", "must be between 300 and 604800");
        }
        if !(300..=24 * 3600).contains(&a.reset_token_ttl_secs) {
            return err("reset_token_ttl_secs", "must be between 300 and 86400");
        }
        Ok(())
    }

    /// The relying party id and the origins passkeys may be used from (see the fields).
    pub fn webauthn_party(&self) -> Result<(String, Vec<url::Url>), String> {
        let a = &self.auth;
        let app = url::Url::parse(a.public_app_url.trim())
            .map_err(|e| format!("AUTH_PUBLIC_APP_URL: {e}"))?;
        let ip_host = matches!(app.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)));
        let rp_id = match a.webauthn_rp_id.trim() {
            "" if ip_host => "localhost".to_owned(),
            "" => app.host_str().unwrap_or("localhost").to_owned(),
            id => id.to_lowercase(),
        };
        let origins = if a.webauthn_origins.is_empty() {
            let mut origin = app.clone();
            if ip_host {
                origin
                    .set_host(Some("localhost"))
                    .map_err(|e| format!("AUTH_PUBLIC_APP_URL: {e}"))?;
            }
            vec![
                url::Url::parse(&origin.origin().ascii_serialization())
                    .map_err(|e| e.to_string())?,
            ]
        } else {
            a.webauthn_origins
                .iter()
                .map(|o| {
                    url::Url::parse(o.trim())
                        .map_err(|e| format!("AUTH_WEBAUTHN_ORIGINS: {o}: {e}"))
                })
                .collect::<Result<_, _>>()?
        };
        Ok((rp_id, origins))
    }

    /// The WebAuthn relying party as configured: refused when the id is no domain or an
    /// origin is not on it.
    pub fn webauthn(&self) -> Result<webauthn_rs::Webauthn, String> {
        let (rp_id, origins) = self.webauthn_party()?;
        if rp_id.parse::<std::net::IpAddr>().is_ok() || rp_id.contains(['/', ':']) {
            return Err(format!(
                "AUTH_WEBAUTHN_RP_ID must be a domain name, not {rp_id:?}"
            ));
        }
        let (first, rest) = origins
            .split_first()
            .ok_or("AUTH_WEBAUTHN_ORIGINS names no origin")?;
        let mut builder = webauthn_rs::WebauthnBuilder::new(&rp_id, first)
            .map_err(|e| {
                format!("AUTH_WEBAUTHN_RP_ID {rp_id:?} does not fit the origin {first}: {e}")
            })?
            .rp_name(&self.auth.totp_issuer);
        for origin in rest {
            webauthn_rs::WebauthnBuilder::new(&rp_id, origin).map_err(|e| {
                format!("AUTH_WEBAUTHN_RP_ID {rp_id:?} does not fit the origin {origin}: {e}")
            })?;
            builder = builder.append_allowed_origin(origin);
        }
        builder.build().map_err(|e| format!("WebAuthn: {e}"))
    }

    /// The 32-byte key that encrypts signing keys at rest.
    pub fn key_encryption_key(&self) -> Option<[u8; 32]> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.key_encryption_key.expose_secret().trim())
            .ok()?;
        raw.try_into().ok()
    }

    /// The key that seals the audit chain.
    pub fn audit_hmac_key(&self) -> Option<[u8; 32]> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(self.auth.audit_hmac_key.expose_secret().trim())
            .ok()?;
        raw.try_into().ok()
    }

    /// Origins allowed to present the refresh cookie.
    pub fn csrf_origins(&self) -> &[String] {
        if self.auth.csrf_allowed_origins.is_empty() {
            &self.http.cors_allowed_origins
        } else {
            &self.auth.csrf_allowed_origins
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_reference_lists_exactly_the_settings() {
        shared::testing::assert_configuration_documented(
            PREFIX,
            shared::config::keys_of::<AuthSettings>(),
        );
    }
}
