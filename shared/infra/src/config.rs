//! Layered configuration: defaults, then an optional TOML file, then `PREFIX_*` environment
//! variables. Loaded once at start; a bad value stops start-up with a message naming the
//! variable to fix, and unknown `PREFIX_*` variables are warned about (typos should not pass
//! silently).
//!
//! The HTTP settings both services share are documented on [`HttpSettings`]; each service
//! documents its own in its `config` module.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use http::HeaderName;

/// Where a service's configuration comes from.
pub struct ConfigSource {
    figment: Figment,
    prefix: &'static str,
}

/// A configuration value that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    pub fn var(prefix: &str, key: &str, problem: impl std::fmt::Display) -> Self {
        Self(format!("{prefix}{}: {problem}", key.to_uppercase()))
    }
}

impl ConfigSource {
    /// `defaults` are service-specific defaults layered under the file and the environment,
    /// as `(key, value)` pairs (for example the listen address, which differs per service).
    pub fn new(
        prefix: &'static str,
        file: Option<PathBuf>,
        defaults: &[(&str, &str)],
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        for (key, value) in defaults {
            figment = figment.merge(Serialized::default(key, value));
        }
        let file =
            file.or_else(|| std::env::var_os(format!("{prefix}CONFIG_FILE")).map(Into::into));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "{prefix}CONFIG_FILE: {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed(prefix));
        Ok(Self { figment, prefix })
    }

    /// Extract one settings struct (all of whose fields have serde defaults).
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.figment.extract().map_err(|err| {
            let key = err.path.join("_");
            if key.is_empty() {
                ConfigError(err.kind.to_string())
            } else {
                ConfigError::var(self.prefix, &key, &err.kind)
            }
        })
    }

    /// `PREFIX_*` environment variables that no settings struct reads.
    pub fn unknown_env_vars(&self, known: &[&[&str]]) -> Vec<String> {
        let known: Vec<String> = known
            .iter()
            .flat_map(|keys| keys.iter())
            .map(|k| format!("{}{}", self.prefix, k.to_uppercase()))
            .chain(std::iter::once(format!("{}CONFIG_FILE", self.prefix)))
            .collect();
        std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with(self.prefix) && !known.contains(k))
            .collect()
    }
}

/// A service's configuration as both services load it: the shared [`HttpSettings`], the
/// service's own settings `S`, and the `PREFIX_*` variables neither reads (for a warning
/// once telemetry is up). `listen_addr` is the service's default listen address.
pub fn load<S: DeserializeOwned>(
    prefix: &'static str,
    file: Option<PathBuf>,
    listen_addr: &str,
) -> Result<(HttpSettings, S, Vec<String>), ConfigError> {
    let source = ConfigSource::new(prefix, file, &[("listen_addr", listen_addr)])?;
    let http: HttpSettings = source.extract()?;
    let own: S = source.extract()?;
    let unknown = source.unknown_env_vars(&[keys_of::<HttpSettings>(), keys_of::<S>()]);
    Ok((http, own, unknown))
}

/// The field names of a settings struct, for [`ConfigSource::unknown_env_vars`].
pub fn keys_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    serde_aux::serde_introspection::serde_introspect::<T>()
}

/// Where the configuration reference (`docs/configuration.md`) disagrees with the settings
/// types of a service: variables of the types it does not list, and variables it lists
/// under the service's prefix that the types do not have. `service_keys` are the service's
/// own keys (listed as `PREFIX_KEY`); the shared HTTP keys are listed without a prefix.
pub fn undocumented(doc: &str, prefix: &str, service_keys: &[&str]) -> Vec<String> {
    let listed: std::collections::HashSet<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .collect();
    let mut problems = Vec::new();
    for key in service_keys {
        let var = format!("{prefix}{}", key.to_uppercase());
        if !listed.contains(var.as_str()) {
            problems.push(format!("{var} is not documented"));
        }
    }
    for key in keys_of::<HttpSettings>() {
        let var = key.to_uppercase();
        if !listed.contains(var.as_str()) {
            problems.push(format!("{var} is not documented"));
        }
    }
    for var in &listed {
        if let Some(key) = var.strip_prefix(prefix)
            && !service_keys.contains(&key.to_lowercase().as_str())
        {
            problems.push(format!("{var} is documented but no setting"));
        }
    }
    problems.sort();
    problems
}

/// Accepts a TOML list or a comma-separated string (as environment variables give).
pub fn comma_list<'de, D, T>(de: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        One(String),
    }
    let items = match Raw::deserialize(de)? {
        Raw::List(items) => items,
        Raw::One(s) => s.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<T>()
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}")))
        })
        .collect()
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// HTTP settings both services read, under their own prefix (`AUTH_`, `TODO_`).
///
/// | variable | default | meaning |
/// |---|---|---|
/// | `LISTEN_ADDR` | `127.0.0.1:8080` (auth), `127.0.0.1:8081` (todo) | address to bind |
/// | `CORS_ALLOWED_ORIGINS` | empty | comma-separated origins allowed by CORS (never `*`) |
/// | `BODY_LIMIT_BYTES` | `65536` | larger bodies get 413 |
/// | `REQUEST_TIMEOUT_SECS` | `15` | a request that takes longer gets 503 |
/// | `HEADER_READ_TIMEOUT_SECS` | `5` | a connection that has not sent its headers by then is closed |
/// | `BODY_READ_TIMEOUT_SECS` | `10` | a body not received by then gets 408 |
/// | `TRUSTED_PROXIES` | empty | comma-separated CIDRs whose forwarding header is believed |
/// | `FORWARDED_HEADER` | `X-Forwarded-For` | the one header those proxies set: `X-Forwarded-For`, `Forwarded` (RFC 7239) or another list of addresses such as `X-Real-IP`; any other is ignored |
/// | `HSTS` | `false` | send `Strict-Transport-Security` (when served over TLS) |
/// | `SHUTDOWN_DRAIN_SECS` | `0` | after SIGTERM, how long requests are still served while `/readyz` answers 503 (set it above your load balancer's readiness-probe interval) |
/// | `SHUTDOWN_TIMEOUT_SECS` | `20` | then, how long in-flight requests may take to finish |
/// | `LOG_FORMAT` | `pretty` | `pretty` or `json` |
/// | `LOG_LEVEL` | `info` | a `tracing` filter such as `info,auth_service=debug` |
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    pub listen_addr: SocketAddr,
    #[serde(deserialize_with = "comma_list")]
    pub cors_allowed_origins: Vec<String>,
    pub body_limit_bytes: usize,
    pub request_timeout_secs: u64,
    pub header_read_timeout_secs: u64,
    pub body_read_timeout_secs: u64,
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<IpNet>,
    pub forwarded_header: ForwardedHeader,
    pub hsts: bool,
    pub shutdown_drain_secs: u64,
    pub shutdown_timeout_secs: u64,
    pub log_format: LogFormat,
    pub log_level: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cors_allowed_origins: Vec::new(),
            body_limit_bytes: 64 * 1024,
            request_timeout_secs: 15,
            header_read_timeout_secs: 5,
            body_read_timeout_secs: 10,
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            hsts: false,
            shutdown_drain_secs: 0,
            shutdown_timeout_secs: 20,
            log_format: LogFormat::Pretty,
            log_level: "info".into(),
        }
    }
}

impl HttpSettings {
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        for origin in &self.cors_allowed_origins {
            if origin == "*" {
                return Err(ConfigError::var(
                    prefix,
                    "cors_allowed_origins",
                    "`*` is not allowed: list the origins",
                ));
            }
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.ends_with('/')
            {
                return Err(ConfigError::var(
                    prefix,
                    "cors_allowed_origins",
                    format!("{origin:?} is not an origin like https://app.example.com"),
                ));
            }
        }
        for (key, value) in [
            ("request_timeout_secs", self.request_timeout_secs),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_read_timeout_secs", self.body_read_timeout_secs),
            ("body_limit_bytes", self.body_limit_bytes as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::var(prefix, key, "must be greater than 0"));
            }
        }
        Ok(())
    }
}

/// The forwarding header the trusted proxies set (`*_FORWARDED_HEADER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// RFC 7239 `Forwarded: for=...`.
    Forwarded,
    /// `X-Forwarded-For`, or another header holding a comma-separated list of addresses, the
    /// nearest hop last (`X-Real-IP` is a list of one).
    List(HeaderName),
}

impl Default for ForwardedHeader {
    fn default() -> Self {
        ForwardedHeader::List(HeaderName::from_static("x-forwarded-for"))
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardedHeader::Forwarded => f.write_str("forwarded"),
            ForwardedHeader::List(name) => f.write_str(name.as_str()),
        }
    }
}

impl std::str::FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = HeaderName::try_from(s.trim())
            .map_err(|_| format!("{s:?} is not a header name like X-Forwarded-For"))?;
        Ok(if name == "forwarded" {
            ForwardedHeader::Forwarded
        } else {
            ForwardedHeader::List(name)
        })
    }
}

impl<'de> Deserialize<'de> for ForwardedHeader {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        String::deserialize(de)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
