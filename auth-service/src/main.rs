use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use auth_service::config::Settings;
use auth_service::domain::RequestMeta;
use auth_service::service::admin::{self, AdminSetup};
use auth_service::service::clients;
use auth_service::startup::{self, Application, MIGRATIONS};
use auth_service::store::audit_chain::ChainCheck;
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
    /// Create the first admin, or promote an existing account. The password of a new
    /// account is read from a prompt, or from stdin when it is not a terminal; never from a
    /// flag or the environment.
    CreateAdmin {
        #[arg(long)]
        email: String,
    },
    /// Manage OAuth service clients.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Create a client; prints its id and secret (shown only once).
    Create {
        #[arg(long)]
        name: String,
        /// A scope it may request (repeat for several), e.g. --scope todos:admin.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
    },
    /// List clients.
    List,
    /// Delete a client and revoke its tokens.
    Delete { id: uuid::Uuid },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain and the seals of the audit log; fails if any row was altered or
    /// removed, or left unsealed for long.
    Verify,
    /// Seal every row not sealed yet, however old (after looking into why it was not).
    Seal,
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
        Command::CreateAdmin { email } => {
            let state = startup::build_state(settings).await?;
            let outcome =
                admin::create_or_promote_admin(&state, &email, read_password, &cli_meta())
                    .await
                    .map_err(describe)?;
            seal_own_rows(&state).await;
            match outcome {
                AdminSetup::Created(user) => {
                    say(&format!("created admin {} ({})", user.email, user.id))
                }
                AdminSetup::Promoted(user) => {
                    say(&format!("promoted {} ({}) to admin", user.email, user.id));
                    unpublished_warning(&state).await?;
                }
                AdminSetup::AlreadyAdmin(user) => {
                    say(&format!("{} ({}) is already an admin", user.email, user.id))
                }
            }
        }
        Command::Client { command } => {
            let state = startup::build_state(settings).await?;
            match command {
                ClientCommand::Create { name, scopes } => {
                    let created = clients::create(&state, None, &name, &scopes, &cli_meta())
                        .await
                        .map_err(describe)?;
                    say(&format!(
                        "client_id={}\nclient_secret={}\nscopes={}\n(the secret is shown only now)",
                        created.client.id,
                        created.secret,
                        created.client.scopes.join(" ")
                    ));
                    seal_own_rows(&state).await;
                }
                ClientCommand::List => {
                    let mut cursor = None;
                    loop {
                        let (rows, next) = clients::list(&state, cursor.as_deref(), 100)
                            .await
                            .map_err(describe)?;
                        for c in rows {
                            say(&format!(
                                "{}  {}  [{}]  {}",
                                c.id,
                                c.name,
                                c.scopes.join(" "),
                                c.created_at
                            ));
                        }
                        match next {
                            Some(next) => cursor = Some(next),
                            None => break,
                        }
                    }
                }
                ClientCommand::Delete { id } => {
                    clients::delete(&state, None, id, &cli_meta())
                        .await
                        .map_err(describe)?;
                    say(&format!("deleted client {id}; its tokens are revoked"));
                    seal_own_rows(&state).await;
                    unpublished_warning(&state).await?;
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Seal,
        } => {
            let state = startup::build_state(settings).await?;
            match auth_service::service::audit_seal::seal_once(&state, true).await? {
                Some((from, last)) => say(&format!("sealed rows {from} to {}", last.id)),
                None => say("nothing to seal"),
            }
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let key = settings
                .audit_hmac_key()
                .context("AUTH_AUDIT_HMAC_KEY must be base64 of 32 bytes")?;
            let pool = startup::pool(&settings)?;
            let mut conn = pool.get().await.context("connecting to PostgreSQL")?;
            match auth_service::store::audit_chain::verify_chain(&mut conn, &key).await? {
                ChainCheck::Intact {
                    rows,
                    sealed,
                    unsealed,
                } => say(&format!(
                    "audit log intact: {rows} rows verified, {sealed} of them sealed \
                     ({unsealed} newest not sealed yet)"
                )),
                ChainCheck::Broken { id, rows_checked } => {
                    anyhow::bail!(
                        "audit log tampered with: the chain breaks at row {id} (after {rows_checked} good rows)"
                    )
                }
                ChainCheck::LongUnsealed { id } => {
                    anyhow::bail!(
                        "audit log not sealed: row {id} was written more than ten minutes ago and never sealed (written while no auth service ran, or by someone who could not seal it); look into it, then `auth-service audit seal`"
                    )
                }
                ChainCheck::BadSeal { id } => {
                    anyhow::bail!(
                        "audit log tampered with: the seal of row {id} does not match (the chain was rewritten, or a seal removed)"
                    )
                }
                ChainCheck::TailMissing { rows } => {
                    anyhow::bail!(
                        "audit log tampered with: its {rows} rows chain, but the last is not the chain's head (rows were removed from the end)"
                    )
                }
            }
        }
    }
    Ok(())
}

/// Seal the audit rows this command wrote: no server may be running to do it.
async fn seal_own_rows(state: &auth_service::state::AppState) {
    if let Err(err) = auth_service::service::audit_seal::seal_once(state, false).await {
        tracing::warn!(error = %err, "sealing the audit log failed; a running auth service will");
    }
}

/// Fail when revocations this command made could not reach Redis: they are in force at the
/// auth service, and reach the other services once a running auth service publishes them.
async fn unpublished_warning(state: &auth_service::state::AppState) -> anyhow::Result<()> {
    if state.revocations.pending().await? {
        anyhow::bail!(
            "revocations are recorded but not yet published to Redis (is it reachable?); a \
             running auth service publishes them within a second, and until one does other \
             services may still accept the revoked tokens"
        );
    }
    Ok(())
}

/// Command output goes to stdout; logs go through tracing.
#[expect(clippy::print_stdout, reason = "the CLI's output")]
fn say(line: &str) {
    println!("{line}");
}

fn cli_meta() -> RequestMeta {
    RequestMeta {
        ip: "cli".into(),
        ip_key: "cli".into(),
        user_agent: Some(format!("auth-service/{} cli", env!("CARGO_PKG_VERSION"))),
        request_id: uuid::Uuid::now_v7().to_string(),
    }
}

/// A service error, as a readable message.
fn describe(err: auth_service::error::AuthError) -> anyhow::Error {
    let api = shared::ApiError::from(err);
    match api.errors {
        Some(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        None => anyhow::anyhow!("{}", api.detail),
    }
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
