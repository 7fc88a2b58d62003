//! What both service binaries do around their command: load the settings, start
//! telemetry, warn of unknown variables, and turn the outcome into an exit code.

use std::future::Future;
use std::process::ExitCode;

use crate::config::{ConfigError, HttpSettings};

/// Run `command` with the settings `loaded` gave. A configuration error is printed and
/// exits with 2 before anything starts; a failed command is logged, printed and exits
/// with 1. `name` is the binary's name in those messages.
pub async fn run<S, F>(
    name: &str,
    loaded: Result<(S, Vec<String>), ConfigError>,
    http: impl FnOnce(&S) -> &HttpSettings,
    command: impl FnOnce(S) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    let (settings, unknown) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(2);
        }
    };
    let http = http(&settings);
    crate::telemetry::init(http.log_format, &http.log_level);
    for var in unknown {
        tracing::warn!(variable = %var, "unknown variable ignored (a typo?)");
    }
    match command(settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "{name} failed");
            eprintln!("{name}: {err:#}");
            ExitCode::FAILURE
        }
    }
}
