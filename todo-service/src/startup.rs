//! Building and running the service: what `serve` does, and what tests boot.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::{Endpoint, EndpointExt};
use secrecy::ExposeSecret;
use shared::background::Background;
use shared::db::PoolOptions;
use shared::denylist::DenylistKeys;
use shared::denylist_feed::Denylist;
use shared::health::{Check, HealthApi, Readiness};
use shared::jwks::JwksKeySource;
use shared::ratelimit::RateLimiter;
use shared::server::ServeOptions;
use shared::verify::{Authenticator, BoxFuture, TokenAuthenticator, Verifier, VerifierConfig};
use tokio::net::TcpListener;

use crate::api;
use crate::config::Settings;
use crate::state::AppState;

pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../migrations/todo");

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
    background: Background,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let t = &settings.todo;
        let pool = shared::db::build_pool(
            t.database_url.expose_secret(),
            &PoolOptions::service("todo-service", t.database_pool_size),
        )?;
        let redis = shared::redis_client::connect_lazy(t.redis_url.expose_secret())
            .context("TODO_REDIS_URL is not a valid Redis URL")?;
        let algorithms = settings.algorithms()?;
        let keys = Arc::new(JwksKeySource::new(
            t.jwks_url.clone(),
            algorithms.clone(),
            Duration::from_secs(t.jwks_min_refetch_secs),
        ));
        let denylist = Denylist::new(Duration::from_secs(t.denylist_max_staleness_secs));
        let authenticator = Arc::new(TokenAuthenticator {
            verifier: Verifier::new(
                VerifierConfig {
                    issuer: t.issuer.clone(),
                    audience: t.audience.clone(),
                    algorithms,
                    leeway_secs: t.clock_leeway_secs,
                },
                keys.clone(),
            )
            .with_cache(shared::verify::REMEMBERED_TOKENS),
            denylist: denylist.clone(),
        });
        let listener = TcpListener::bind(settings.http.listen_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (is the port taken? set TODO_LISTEN_ADDR)",
                    settings.http.listen_addr
                )
            })?;
        let addr = listener.local_addr()?;
        let redis_for_limits = redis.clone();
        let prefix = t.redis_prefix.clone();
        let state = Arc::new(AppState {
            settings,
            drain: Default::default(),
            pool,
            redis,
            keys,
            denylist,
            authenticator,
            limiter: RateLimiter::new(redis_for_limits, &prefix),
        });
        let mut background = Background::new();
        background.repeat("jwks", &state.keys, |keys| async move {
            ControlFlow::Continue(keys.refresh_logged().await)
        });
        let t = &state.settings.todo;
        background.spawn(
            "denylist feed",
            state.denylist.feed(
                t.redis_url.expose_secret().to_owned(),
                DenylistKeys::new(&t.redis_prefix),
            ),
        );
        background.spawn(
            "events",
            crate::service::events::consumer(
                Arc::downgrade(&state),
                t.redis_url.expose_secret().to_owned(),
                t.redis_prefix.clone(),
            ),
        );
        background.every(
            "idempotency keys",
            Duration::from_secs(60),
            &state,
            |state| async move {
                crate::service::todos::purge_idempotency_keys(&state).await;
                ControlFlow::Continue(())
            },
        );
        Ok(Self {
            listener,
            addr,
            state,
            background,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    pub fn endpoint(state: Arc<AppState>) -> impl Endpoint + 'static {
        let health = HealthApi::new(
            Arc::new(Deps {
                state: state.clone(),
            }),
            state.drain.clone(),
        );
        let authenticator: Arc<dyn Authenticator> = state.authenticator.clone();
        shared::http::mount(
            api::service(state.clone(), health),
            &state.settings.http,
            |r| r,
        )
        .data(authenticator)
        .data(state)
    }

    pub async fn run_until_stopped(self) {
        self.run_until(shared::server::shutdown_signal()).await;
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let http = &self.state.settings.http;
        let opts = ServeOptions::from(http);
        tracing::info!(addr = %self.addr, "todo-service listening");
        let ep = Self::endpoint(self.state.clone());
        shared::server::serve(self.listener, ep, opts, shutdown, self.state.drain.clone()).await;
        self.background.stop(Duration::from_secs(5)).await;
        self.state.pool.close();
        tracing::info!("todo-service stopped");
    }
}

struct Deps {
    state: Arc<AppState>,
}

impl Readiness for Deps {
    fn check(&self) -> BoxFuture<'_, Vec<Check>> {
        Box::pin(async move {
            let s = &self.state;
            let mut checks = shared::health::dependency_checks(&s.pool, &s.redis).await;
            checks.push(Check {
                name: "denylist".into(),
                status: s.denylist.health().into(),
            });
            // Tokens cannot be verified without keys; cached keys keep working when the auth
            // service is down.
            checks.push(Check::up_or_down("jwks", s.keys.has_keys()));
            checks.push(Check::rate_limits(&s.limiter));
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
            metrics::gauge!("denylist_entries").set(self.state.denylist.len() as f64);
            metrics::gauge!("denylist_stale_seconds")
                .set(self.state.denylist.stale_for().as_secs_f64());
        })
    }
}
