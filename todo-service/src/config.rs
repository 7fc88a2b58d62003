//! The TODO service's settings: defaults, then the TOML file named by `TODO_CONFIG_FILE` (or
//! `--config`), then `TODO_*` environment variables. Every variable, with its default and
//! meaning, is listed in `docs/configuration.md` (a test checks that list against these
//! types), with the HTTP settings of [`shared::config::HttpSettings`] under `TODO_`.

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
    pub admin_require_mfa: bool,
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
            admin_require_mfa: false,
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
