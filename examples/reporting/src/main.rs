//! An example service that calls the TODO service with its own credentials: it gets an
//! OAuth 2 client-credentials token from the auth service with the `oauth2` crate, keeps it
//! until shortly before it expires, and reads every owner's todos through the admin API
//! with a client that progenitor generates from the TODO service's OpenAPI document at build
//! time. A token refused as expired or revoked is dropped and a new one fetched, once.
//!
//! ```text
//! REPORTING_CLIENT_ID=... REPORTING_CLIENT_SECRET=... \
//!     cargo run -p reporting -- --auth http://127.0.0.1:8080 --todo http://127.0.0.1:8081
//! ```
//!
//! The client needs the scope `todos:admin`: `auth-service client create --name reporting
//! --scope todos:admin`.

mod report;
mod token;

use clap::Parser;

/// The TODO service's API, generated from `todo-service/openapi.json` (the document the
/// service serves; a snapshot test keeps the two equal).
pub mod todo_api {
    progenitor::generate_api!(
        spec = "../../todo-service/openapi.json",
        interface = Builder
    );
}

#[derive(Parser)]
#[command(about = "Report on every owner's todos, as a service with its own credentials")]
struct Cli {
    /// The auth service's base URL.
    #[arg(
        long,
        env = "REPORTING_AUTH_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    auth: String,
    /// The TODO service's base URL.
    #[arg(
        long,
        env = "REPORTING_TODO_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    todo: String,
    #[arg(long, env = "REPORTING_CLIENT_ID")]
    client_id: String,
    #[arg(long, env = "REPORTING_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Also show recovery: report, have the token revoked (as an operator would, through
    /// `/oauth/revoke`), and report again with a new one.
    #[arg(long)]
    show_recovery: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let tokens = token::TokenSource::new(&cli.auth, cli.client_id, cli.client_secret)?;
    let reporter = report::Reporter::new(&cli.todo, tokens);
    let summary = reporter.report().await?;
    say(&summary.to_string());
    if cli.show_recovery {
        let revoked = reporter.revoke_current_token().await?;
        say(&format!(
            "revoked the token in use ({revoked}); reporting again"
        ));
        let again = reporter.report().await?;
        say(&again.to_string());
        anyhow::ensure!(
            reporter.tokens_fetched() == 2,
            "expected exactly one new token after the revocation, fetched {}",
            reporter.tokens_fetched()
        );
        say("recovered with a new token");
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the example's output")]
fn say(line: &str) {
    println!("{line}");
}
