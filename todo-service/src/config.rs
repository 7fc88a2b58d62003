//! The TODO service's settings: defaults, then the TOML file named by `TODO_CONFIG_FILE` (or
//! `--config`), then `TODO_*` environment variables.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `TODO_DATABASE_URL` | required | PostgreSQL URL |
//! | `TODO_DATABASE_POOL_SIZE` | `16` | connections in the pool |
//! | `TODO_REDIS_URL` | required | Redis URL |
//! | `TODO_REDIS_PREFIX` | `authsvc:` | prefix of the auth service's Redis keys (must match `AUTH_REDIS_PREFIX`) |
//!
//! Plus the HTTP settings of [`shared::config::HttpSettings`] under `TODO_`.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use shared::config::{ConfigError, ConfigSource, HttpSettings, keys_of};

pub const PREFIX: &str = "TODO_";

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct TodoSettings {
    pub database_url: SecretString,
    pub database_pool_size: usize,
    pub redis_url: SecretString,
    pub redis_prefix: String,
}

impl Default for TodoSettings {
    fn default() -> Self {
        Self {
            database_url: SecretString::from(""),
            database_pool_size: 16,
            redis_url: SecretString::from(""),
            redis_prefix: "authsvc:".into(),
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
        let source = ConfigSource::new(PREFIX, file, &[("listen_addr", "127.0.0.1:8081")])?;
        let http: HttpSettings = source.extract()?;
        let todo: TodoSettings = source.extract()?;
        let unknown =
            source.unknown_env_vars(&[keys_of::<HttpSettings>(), keys_of::<TodoSettings>()]);
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
        Ok(())
    }
}
