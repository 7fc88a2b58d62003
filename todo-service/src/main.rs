use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use todo_service::config::Settings;
use todo_service::startup::{Application, MIGRATIONS};

/// The TODO service.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML config file (else TODO_CONFIG_FILE; environment variables override it).
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (settings, unknown) = match Settings::load(cli.config) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("todo-service: {err}");
            return ExitCode::from(2);
        }
    };
    shared::telemetry::init(settings.http.log_format, &settings.http.log_level);
    for var in unknown {
        tracing::warn!(variable = %var, "unknown TODO_ variable ignored (a typo?)");
    }
    let result = match cli.command {
        Command::Serve => match Application::build(settings).await {
            Ok(app) => {
                app.run_until_stopped().await;
                Ok(())
            }
            Err(err) => Err(err),
        },
        Command::Migrate => {
            shared::db::run_migrations(settings.todo.database_url.expose_secret(), MIGRATIONS)
                .await
                .map(|applied| tracing::info!(applied, "migrations applied"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "todo-service failed");
            eprintln!("todo-service: {err:#}");
            ExitCode::FAILURE
        }
    }
}
