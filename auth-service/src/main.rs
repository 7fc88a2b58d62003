use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use auth_service::config::Settings;
use auth_service::startup::{self, Application, MIGRATIONS};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

/// The auth service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML config file (else AUTH_CONFIG_FILE; environment variables override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Publish a new signing key now; it starts signing after AUTH_KEY_PUBLISH_LEAD_SECS
    /// (so verifiers have fetched it), and old keys stay published until their tokens expire.
    RotateKeys {
        /// Sign with the new key at once (after a key compromise).
        #[arg(long)]
        now: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (settings, unknown) = match Settings::load(cli.config) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("auth-service: {err}");
            return ExitCode::from(2);
        }
    };
    shared::telemetry::init(settings.http.log_format, &settings.http.log_level);
    for var in unknown {
        tracing::warn!(variable = %var, "unknown AUTH_ variable ignored (a typo?)");
    }
    match run(cli.command, settings).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "auth-service failed");
            eprintln!("auth-service: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            let app = Application::build(settings).await?;
            app.run_until_stopped().await;
        }
        Command::Migrate => {
            let applied =
                shared::db::run_migrations(settings.auth.database_url.expose_secret(), MIGRATIONS)
                    .await?;
            tracing::info!(applied, "migrations applied");
        }
        Command::RotateKeys { now } => {
            let pool = startup::pool(&settings)?;
            let mut conn = pool.get().await.context("connecting to PostgreSQL")?;
            let lead = if now {
                chrono::Duration::zero()
            } else {
                chrono::Duration::seconds(settings.auth.key_publish_lead_secs)
            };
            let (kid, activates_at) = auth_service::crypto::keyring::rotate(
                &mut conn,
                &startup::key_cipher(&settings)?,
                settings.auth.signing_alg,
                lead,
                startup::token_horizon(&settings),
            )
            .await?;
            tracing::info!(%kid, %activates_at, "new signing key published");
        }
    }
    Ok(())
}
