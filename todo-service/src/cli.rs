//! The command line: what each subcommand of the binary does, callable from tests too.

use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::startup::{Application, MIGRATIONS};

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API.
    Serve,
    /// Apply pending database migrations.
    Migrate,
}

pub async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await;
            Ok(())
        }
        Command::Migrate => {
            let applied =
                shared::db::run_migrations(settings.todo.database_url.expose_secret(), MIGRATIONS)
                    .await?;
            tracing::info!(applied, "migrations applied");
            Ok(())
        }
    }
}
