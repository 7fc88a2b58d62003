//! Building and running the service: what `serve` does, and what tests boot.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::middleware::CookieJarManager;
use poem::{Endpoint, EndpointExt};
use secrecy::ExposeSecret;
use shared::background::Background;
use shared::db::{PgPool, PoolOptions};
use shared::health::{Check, HealthApi, Readiness};
use shared::ratelimit::RateLimiter;
use shared::server::ServeOptions;
use shared::verify::{Authenticator, BoxFuture, Verifier, VerifierConfig};
use tokio::net::TcpListener;

use crate::api;
use crate::config::Settings;
use crate::crypto::hashing::{HashParams, PasswordHashing};
use crate::crypto::keyring::KeyRing;
use crate::crypto::keys::KeyCipher;
use crate::service::events::EventPublisher;
use crate::service::revocation::RevocationPublisher;
use crate::state::AppState;

pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../migrations/auth");

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    denylist_sync: Background,
    background: Background,
}

/// How often every replica re-reads the signing keys.
pub const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// How long a background run in progress may take to finish at shutdown.
const BACKGROUND_GRACE: Duration = Duration::from_secs(5);

/// The periodic work: the denylist sync (stopped first at shutdown, so that the lease is
/// left right after its last pass), and key reloads, events, purging, and chaining and
/// sealing the audit log.
fn start_background(state: &Arc<AppState>) -> (Background, Background) {
    let second = Duration::from_secs(1);
    let mut sync = Background::new();
    sync.every(
        "denylist sync",
        second,
        &state.revocations,
        |publisher| async move {
            publisher.sync_logged().await;
            ControlFlow::Continue(())
        },
    );
    let mut bg = Background::new();
    bg.every(
        "signing keys",
        KEY_RELOAD_INTERVAL,
        &state.keys,
        |ring| async move {
            ring.reload_throttled().await;
            ControlFlow::Continue(())
        },
    );
    bg.every("events", second, &state.events, |events| async move {
        events.publish_logged().await;
        ControlFlow::Continue(())
    });
    let purge_every = state.settings.auth.purge_interval_secs;
    if purge_every > 0 {
        bg.every(
            "purge",
            Duration::from_secs(purge_every),
            state,
            |state| async move {
                crate::service::purge::purge_once(&state).await;
                ControlFlow::Continue(())
            },
        );
    }
    bg.every(
        "audit chain",
        Duration::from_millis(500),
        state,
        |state| async move {
            crate::service::audit_seal::chain_logged(&state).await;
            ControlFlow::Continue(())
        },
    );
    if !state.mail.enabled() {
        tracing::warn!("AUTH_SMTP_URL is unset: mail waits in the outbox until it is set");
    }
    bg.every("mail", second, state, |state| async move {
        if let Err(err) = crate::service::mail::send_due(&state).await {
            tracing::warn!(error = %format!("{err:#}"), "the mail worker's pass failed");
        }
        ControlFlow::Continue(())
    });
    let mark = Arc::new(tokio::sync::Mutex::new(None));
    bg.every("audit seal", second, state, move |state| {
        let mark = mark.clone();
        async move { crate::service::audit_seal::seal_logged(&state, &mut *mark.lock().await).await }
    });
    (sync, bg)
}

/// The database pool as configured.
pub fn pool(settings: &Settings) -> anyhow::Result<PgPool> {
    shared::db::build_pool(
        settings.auth.database_url.expose_secret(),
        &PoolOptions::service("auth-service", settings.auth.database_pool_size),
    )
}

/// How long a retired key stays published, and a revocation matters: the access-token
/// lifetime plus the largest clock leeway any verifier may allow (not this service's own:
/// a verifier with a larger one would otherwise accept a token whose revocation is gone).
pub fn token_horizon(settings: &Settings) -> chrono::Duration {
    chrono::Duration::seconds(settings.auth.access_token_ttl_secs + shared::verify::MAX_LEEWAY_SECS)
}

pub fn key_cipher(settings: &Settings) -> anyhow::Result<KeyCipher> {
    let kek = settings
        .key_encryption_key()
        .context("AUTH_KEY_ENCRYPTION_KEY must be base64 of 32 bytes")?;
    Ok(KeyCipher::new(&kek))
}

/// Everything but the listener and the background tasks: what the CLI commands use too.
pub async fn build_state(settings: Settings) -> anyhow::Result<Arc<AppState>> {
    let pool = pool(&settings)?;
    let redis = shared::redis_client::connect_lazy(settings.auth.redis_url.expose_secret())
        .context("AUTH_REDIS_URL is not a valid Redis URL")?;
    let horizon = token_horizon(&settings);
    let keys = Arc::new(KeyRing::new(pool.clone(), key_cipher(&settings)?, horizon));
    {
        let mut conn = pool.get().await.context(
            "connecting to PostgreSQL (is AUTH_DATABASE_URL right, and has `auth-service migrate` run?)",
        )?;
        keys.bootstrap(&mut conn, settings.auth.signing_alg)
            .await
            .context("loading signing keys")?;
    }
    let verifier = Verifier::new(
        VerifierConfig {
            issuer: settings.auth.issuer.clone(),
            audience: settings.auth.audience.clone(),
            algorithms: vec![
                jsonwebtoken::Algorithm::EdDSA,
                jsonwebtoken::Algorithm::ES256,
                jsonwebtoken::Algorithm::RS256,
            ],
            leeway_secs: settings.auth.clock_leeway_secs,
        },
        keys.clone(),
    )
    .with_cache(shared::verify::REMEMBERED_TOKENS);
    let a = &settings.auth;
    let hashing = PasswordHashing::new(
        HashParams {
            memory_kib: a.argon2_memory_kib,
            iterations: a.argon2_iterations,
            parallelism: a.argon2_parallelism,
        },
        a.hash_concurrency,
        a.hash_queue,
    )?;
    let revocations = Arc::new(RevocationPublisher::new(
        pool.clone(),
        redis.clone(),
        &a.redis_prefix,
        horizon,
    ));
    let limiter = RateLimiter::new(redis.clone(), &a.redis_prefix);
    let events = Arc::new(EventPublisher::new(
        pool.clone(),
        redis.clone(),
        &a.redis_prefix,
    ));
    let mail = crate::service::mail::Mailer::new(&settings)?;
    let secrets = key_cipher(&settings)?;
    let webauthn = settings.webauthn().map_err(|why| anyhow::anyhow!(why))?;
    Ok(Arc::new(AppState {
        webauthn,
        mail,
        secrets,
        settings,
        drain: Default::default(),
        pool,
        redis,
        hashing,
        keys,
        revocations,
        events,
        limiter,
        verifier,
    }))
}

impl Application {
    /// Connect, load keys, start the background work, bind the listener (port 0 picks a
    /// free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listen = settings.http.listen_addr;
        let state = build_state(settings).await?;
        let listener = TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen} (is the port taken? set AUTH_LISTEN_ADDR)")
        })?;
        let addr = listener.local_addr()?;
        let (denylist_sync, background) = start_background(&state);
        Ok(Self {
            listener,
            addr,
            state,
            denylist_sync,
            background,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// The whole HTTP surface.
    pub fn endpoint(state: Arc<AppState>) -> impl Endpoint + 'static {
        let health = HealthApi::new(
            Arc::new(Deps {
                state: state.clone(),
            }),
            state.drain.clone(),
        );
        let authenticator: Arc<dyn Authenticator> = Arc::new(api::edge::SessionAuthenticator {
            state: state.clone(),
        });
        let service = api::service(state.clone(), health);
        shared::http::mount(service, &state.settings.http, |routes| {
            routes
                .around(api::oauth::framework_errors_as_oauth)
                .around(api::edge::empty_post_is_json)
                .with(CookieJarManager::new())
        })
        .data(authenticator)
        .data(state)
    }

    pub async fn run_until_stopped(self) {
        self.run_until(shared::server::shutdown_signal()).await;
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let http = &self.state.settings.http;
        let opts = ServeOptions::from(http);
        tracing::info!(addr = %self.addr, "auth-service listening");
        let ep = Self::endpoint(self.state.clone());
        let drained =
            shared::server::serve(self.listener, ep, opts, shutdown, self.state.drain.clone())
                .await;
        // The sync's last pass ends before the lease is left, and nothing renews it after.
        self.denylist_sync.stop(BACKGROUND_GRACE).await;
        self.state.revocations.leave(drained).await;
        self.background.stop(BACKGROUND_GRACE).await;
        self.state.pool.close();
        tracing::info!("auth-service stopped");
    }
}

struct Deps {
    state: Arc<AppState>,
}

impl Readiness for Deps {
    fn check(&self) -> BoxFuture<'_, Vec<Check>> {
        Box::pin(async move {
            let mut checks =
                shared::health::dependency_checks(&self.state.pool, &self.state.redis).await;
            checks.push(Check::rate_limits(&self.state.limiter));
            checks
        })
    }

    fn refresh_gauges(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            shared::health::refresh_dependency_gauges(
                &self.state.pool,
                &self.state.redis,
                &self.state.limiter,
            )
            .await;
            metrics::gauge!("hash_queue_depth").set(self.state.hashing.waiting() as f64);
            // Counters an alert watches, shown at zero before their first event.
            metrics::counter!("hash_refusals_total").increment(0);
            metrics::counter!("denylist_sync_failures_total").increment(0);
            metrics::counter!("audit_chain_rewritten_total").increment(0);
            metrics::counter!("mail_given_up_total").increment(0);
            metrics::counter!("redis_errors_total", "op" => "denylist_publish").increment(0);
        })
    }
}
