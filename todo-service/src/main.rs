use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use todo_service::cli::{self, Command};
use todo_service::config::Settings;

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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    shared::binary::run(
        "todo-service",
        Settings::load(cli.config),
        |s| &s.http,
        |settings| cli::run(cli.command, settings),
    )
    .await
}
