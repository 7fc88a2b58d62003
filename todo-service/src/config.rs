//! The TODO service's settings: defaults, then the TOML file named by `TODO_CONFIG_FILE` (or
//! `--config`), then `TODO_*` environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `TODO_DATABASE_URL` | required | PostgreSQL URL |
//! | `TODO_DATABASE_POOL_SIZE` | `16` | connections in the pool |
//! | `TODO_REDIS_URL` | required | Redis URL |
//! | `TODO_REDIS_PREFIX` | `authsvc:` | prefix of the auth service's Redis keys (must match `AUTH_REDIS_PREFIX`) |
//! | `TODO_JWKS_URL` | `http://127.0.0.1:8080/.well-known/jwks.json` | where the auth service publishes its keys |
//! | `TODO_ISSUER` | `http://127.0.0.1:8080` | the exact `iss` accepted |
//! | `TODO_AUDIENCE` | `todo-service` | the audience that must be in `aud` |
//! | `TODO_ALGORITHMS` | `EdDSA,ES256,RS256` | accepted signing algorithms (asymmetric only) |
//! | `TODO_CLOCK_LEEWAY_SECS` | `30` | leeway for `exp`/`nbf`/`iat` |
//! | `TODO_JWKS_MIN_REFETCH_SECS` | `10` | an unknown `kid` refetches the JWKS at most this often |
//! | `TODO_DENYLIST_MAX_STALENESS_SECS` | `5` | how long the denylist may be out of touch with Redis before requests get 503 |
//! | `TODO_MAX_TODOS_PER_OWNER` | `1000` | creating more is refused with 409 `CONFLICT` |
//! | `TODO_IDEMPOTENCY_TTL_SECS` | `86400` | how long an `Idempotency-Key` is remembered |
//! | `TODO_RATE_WRITE_USER` | `600/60s` | creates, updates and deletes per caller (`sub`) |
//!
//! Plus the HTTP settings of [`shared::config::HttpSettings`] under `TODO_`.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shared::config::{ConfigError, HttpSettings, comma_list};
use shared::ratelimit::Rate;

pub const PREFIX: &str = "TODO_";

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TodoSettings {
    pub database_url: SecretString,
    pub database_pool_size: usize,
    pub redis_url: SecretString,
    pub redis_prefix: String,
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
    #[serde(deserialize_with = "comma_list")]
    pub algorithms: Vec<String>,
    pub clock_leeway_secs: i64,
    pub jwks_min_refetch_secs: u64,
    pub denylist_max_staleness_secs: u64,
    pub max_todos_per_owner: i64,
    pub idempotency_ttl_secs: i64,
    pub rate_write_user: Rate,
}

impl Default for TodoSettings {
    fn default() -> Self {
        Self {
            database_url: SecretString::from(""),
            database_pool_size: 16,
            redis_url: SecretString::from(""),
            redis_prefix: "authsvc:".into(),
            jwks_url: "http://127.0.0.1:8080/.well-known/jwks.json".into(),
            issuer: "http://127.0.0.1:8080".into(),
            audience: "todo-service".into(),
            algorithms: vec!["EdDSA".into(), "ES256".into(), "RS256".into()],
            clock_leeway_secs: 30,
            jwks_min_refetch_secs: 10,
            denylist_max_staleness_secs: 5,
            max_todos_per_owner: 1000,
            idempotency_ttl_secs: 24 * 3600,
            rate_write_user: Rate::new(600, 60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub http: HttpSettings,
    pub todo: TodoSettings,
}

impl Settings {
    pub fn load(file: Option<PathBuf>) -> Result<(Self, Vec<String>), ConfigError> {
        let (http, todo, unknown) = shared::config::load(PREFIX, file, "127.0.0.1:8081")?;
        let settings = Self { http, todo };
        settings.validate()?;
        Ok((settings, unknown))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.http.validate(PREFIX)?;
        if self.todo.database_url.expose_secret().is_empty() {
            return Err(ConfigError::var(
                PREFIX,
                "database_url",
                "is required (a postgres:// URL)",
            ));
        }
        if self.todo.redis_url.expose_secret().is_empty() {
            return Err(ConfigError::var(
                PREFIX,
                "redis_url",
                "is required (a redis:// URL)",
            ));
        }
        if self.todo.database_pool_size == 0 {
            return Err(ConfigError::var(
                PREFIX,
                "database_pool_size",
                "must be at least 1",
            ));
        }
        let t = &self.todo;
        if !(t.jwks_url.starts_with("http://") || t.jwks_url.starts_with("https://")) {
            return Err(ConfigError::var(
                PREFIX,
                "jwks_url",
                "must be an http(s) URL",
            ));
        }
        if t.issuer.is_empty() {
            return Err(ConfigError::var(PREFIX, "issuer", "is required"));
        }
        if t.audience.is_empty() {
            return Err(ConfigError::var(PREFIX, "audience", "is required"));
        }
        self.algorithms()?;
        if !(0..=shared::verify::MAX_LEEWAY_SECS).contains(&t.clock_leeway_secs) {
            return Err(ConfigError::var(
                PREFIX,
                "clock_leeway_secs",
                "must be between 0 and 300",
            ));
        }
        if t.denylist_max_staleness_secs == 0 {
            return Err(ConfigError::var(
                PREFIX,
                "denylist_max_staleness_secs",
                "must be at least 1",
            ));
        }
        if t.max_todos_per_owner < 1 {
            return Err(ConfigError::var(
                PREFIX,
                "max_todos_per_owner",
                "must be at least 1",
            ));
        }
        if t.idempotency_ttl_secs < 60 {
            return Err(ConfigError::var(
                PREFIX,
                "idempotency_ttl_secs",
                "must be at least 60",
            ));
        }
        Ok(())
    }

    /// The accepted algorithms. Symmetric ones are refused: anyone holding the key could
    /// mint tokens.
    pub fn algorithms(&self) -> Result<Vec<jsonwebtoken::Algorithm>, ConfigError> {
        use jsonwebtoken::Algorithm::*;
        let mut out = Vec::new();
        for name in &self.todo.algorithms {
            let alg = match name.as_str() {
                "EdDSA" => EdDSA,
                "ES256" => ES256,
                "ES384" => ES384,
                "RS256" => RS256,
                "RS384" => RS384,
                "RS512" => RS512,
                "PS256" => PS256,
                "PS384" => PS384,
                "PS512" => PS512,
                other => {
                    return Err(ConfigError::var(
                        PREFIX,
                        "algorithms",
                        format!("{other:?} is not an accepted asymmetric algorithm"),
                    ));
                }
            };
            out.push(alg);
        }
        if out.is_empty() {
            return Err(ConfigError::var(
                PREFIX,
                "algorithms",
                "must list at least one",
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_reference_lists_exactly_the_settings() {
        shared::testing::assert_configuration_documented(
            PREFIX,
            shared::config::keys_of::<TodoSettings>(),
        );
    }
}
