use std::path::PathBuf;
use std::process::ExitCode;

use auth_service::cli::{self, Command};
use auth_service::config::Settings;
use clap::Parser;

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

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout();
    shared::binary::run(
        "auth-service",
        Settings::load(cli.config),
        |s| &s.http,
        |settings| cli::run(cli.command, settings, read_password, &mut out),
    )
    .await
}

/// The new admin's password: prompted twice on a terminal, else one line of stdin.
fn read_password() -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal};
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password for the new admin: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == again, "the passwords differ");
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on stdin");
        Ok(password)
    }
}
