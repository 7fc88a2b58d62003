//! The command line: what each subcommand of the binary does, callable from tests too.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use secrecy::ExposeSecret;

use crate::config::Settings;
use crate::domain::RequestMeta;
use crate::service::admin::{self, AdminSetup};
use crate::service::clients;
use crate::startup::{self, Application, MIGRATIONS};
use crate::store::audit_chain::ChainCheck;

#[derive(Subcommand)]
pub enum Command {
    /// Serve the API.
    Serve,
    /// Apply pending database migrations.
    Migrate,
    /// Publish a new signing key now; it starts signing after AUTH_KEY_PUBLISH_LEAD_SECS
    /// (so verifiers have fetched it), and old keys stay published until their tokens expire.
    RotateKeys {
        /// Sign with the new key as soon as every replica has loaded it (22 s, after a key
        /// compromise), rather than after the publish lead.
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
    /// Purge expired rows now (what the service does every AUTH_PURGE_INTERVAL_SECS): one
    /// line per table with the rows deleted, the batches, and the longest batch.
    Purge,
}

#[derive(Subcommand)]
pub enum ClientCommand {
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
pub enum AuditCommand {
    /// Check the hash chain and the seals of the audit log; fails if any row was altered or
    /// removed, or left unsealed for long.
    Verify,
    /// Seal every row not sealed yet, however old (after looking into why it was not).
    Seal,
}

/// Run one command. Its output goes to `out`; a new admin's password comes from
/// `read_password` (a prompt, or stdin, in the binary).
pub async fn run(
    command: Command,
    settings: Settings,
    read_password: fn() -> anyhow::Result<String>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    // Output that cannot be written (a closed pipe, say) fails the command: a client's
    // secret must not be lost silently.
    let mut say = |line: &str| writeln!(out, "{line}").context("writing the output");
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
                // Not at once: a replica signing with a key that another replica does not
                // publish yet would have its tokens refused by verifiers that fetch the JWKS
                // from that other one. Every replica re-reads the keys this often.
                // Two intervals: one reload may fail, and clocks differ a little.
                chrono::Duration::from_std(startup::KEY_RELOAD_INTERVAL * 2)?
                    + chrono::Duration::seconds(2)
            } else {
                chrono::Duration::seconds(settings.auth.key_publish_lead_secs)
            };
            let (kid, activates_at) = crate::crypto::keyring::rotate(
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
                    say(&format!("created admin {} ({})", user.email, user.id))?
                }
                AdminSetup::Promoted(user) => {
                    say(&format!("promoted {} ({}) to admin", user.email, user.id))?;
                    unpublished_warning(&state).await?;
                }
                AdminSetup::AlreadyAdmin(user) => {
                    say(&format!("{} ({}) is already an admin", user.email, user.id))?
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
                    ))?;
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
                            ))?;
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
                    say(&format!("deleted client {id}; its tokens are revoked"))?;
                    seal_own_rows(&state).await;
                    unpublished_warning(&state).await?;
                }
            }
        }
        Command::Purge => {
            let state = startup::build_state(settings).await?;
            let mut failed = false;
            for table in crate::service::purge::purge_tables(&state).await {
                match table.purged {
                    Ok(p) => say(&format!(
                        "{}: {} rows deleted in {} batches, the longest {} ms",
                        table.what,
                        p.rows,
                        p.batches,
                        p.longest_batch.as_millis()
                    ))?,
                    Err(err) => {
                        failed = true;
                        say(&format!("{}: failed: {err}", table.what))?;
                    }
                }
            }
            anyhow::ensure!(!failed, "purging failed for some tables (see above)");
        }
        Command::Audit {
            command: AuditCommand::Seal,
        } => {
            let state = startup::build_state(settings).await?;
            match crate::service::audit_seal::seal_once(&state, true).await? {
                Some((from, last)) => say(&format!("sealed rows {from} to {}", last.id))?,
                None => say("nothing to seal")?,
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
            // Every event written so far is checked: those waiting are chained first (when
            // this role may; a read-only auditor's check covers the chained rows).
            if let Err(err) = crate::store::audit_chain::chain_all(&mut conn, 1_000).await {
                say(&format!("events waiting were not chained first: {err}"))?;
            }
            let waiting = crate::store::audit_chain::pending_count(&mut conn)
                .await
                .unwrap_or(0);
            if waiting > 0 {
                say(&format!(
                    "{waiting} events wait to be chained; they are not checked"
                ))?;
            }
            match crate::store::audit_chain::verify_chain(&mut conn, &key).await? {
                ChainCheck::Intact {
                    rows,
                    sealed,
                    unsealed,
                } => say(&format!(
                    "audit log intact: {rows} rows verified, {sealed} of them sealed \
                     ({unsealed} newest not sealed yet)"
                ))?,
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
async fn seal_own_rows(state: &crate::state::AppState) {
    if let Err(err) = crate::service::audit_seal::seal_once(state, false).await {
        tracing::warn!(error = %err, "sealing the audit log failed; a running auth service will");
    }
}

/// Fail when revocations this command made could not reach Redis: they are in force at the
/// auth service, and reach the other services once a running auth service publishes them.
async fn unpublished_warning(state: &crate::state::AppState) -> anyhow::Result<()> {
    if state.revocations.pending().await? {
        anyhow::bail!(
            "revocations are recorded but not yet published to Redis (is it reachable?); a \
             running auth service publishes them within a second, and until one does other \
             services may still accept the revoked tokens"
        );
    }
    Ok(())
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
fn describe(err: crate::error::AuthError) -> anyhow::Error {
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
