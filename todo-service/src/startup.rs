//! Building and running the service: what `serve` does, and what tests boot.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use poem::{Endpoint, EndpointExt};
use poem_openapi::OpenApiService;
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use shared::db::{PgPool, PoolOptions};
use shared::health::{Check, HealthApi, Readiness};
use shared::server::ServeOptions;
use shared::verify::BoxFuture;
use tokio::net::TcpListener;

use crate::config::Settings;

pub const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
    diesel_migrations::embed_migrations!("../migrations/todo");

pub struct AppState {
    pub settings: Settings,
    pub pool: PgPool,
    pub redis: ConnectionManager,
}

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<AppState>,
}

pub type Apis = HealthApi;

/// The API with its OpenAPI description.
pub fn service(health: HealthApi) -> OpenApiService<Apis, ()> {
    OpenApiService::new(health, "todo-service", env!("CARGO_PKG_VERSION")).description(
        "A TODO resource API that verifies access tokens from the auth service locally. Every \
         error is RFC 9457 problem+json with a stable `code`.",
    )
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = shared::db::build_pool(
            settings.todo.database_url.expose_secret(),
            &PoolOptions {
                max_size: settings.todo.database_pool_size,
                acquire_timeout: Duration::from_secs(5),
                statement_timeout: Duration::from_secs(10),
                application_name: "todo-service",
            },
        )?;
        let redis = shared::redis_client::connect_lazy(settings.todo.redis_url.expose_secret())
            .context("TODO_REDIS_URL is not a valid Redis URL")?;
        let listener = TcpListener::bind(settings.http.listen_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (is the port taken? set TODO_LISTEN_ADDR)",
                    settings.http.listen_addr
                )
            })?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            state: Arc::new(AppState {
                settings,
                pool,
                redis,
            }),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn endpoint(state: Arc<AppState>) -> impl Endpoint + 'static {
        let health = HealthApi::new(Arc::new(Deps {
            pool: state.pool.clone(),
            redis: state.redis.clone(),
        }));
        shared::http::mount(service(health), &state.settings.http).data(state)
    }

    pub async fn run_until_stopped(self) {
        self.run_until(shared::server::shutdown_signal()).await;
    }

    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let http = &self.state.settings.http;
        let opts = ServeOptions {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            shutdown_timeout: Duration::from_secs(http.shutdown_timeout_secs),
        };
        tracing::info!(addr = %self.addr, "todo-service listening");
        let ep = Self::endpoint(self.state.clone());
        shared::server::serve(self.listener, ep, opts, shutdown).await;
        self.state.pool.close();
        tracing::info!("todo-service stopped");
    }
}

struct Deps {
    pool: PgPool,
    redis: ConnectionManager,
}

impl Readiness for Deps {
    fn check(&self) -> BoxFuture<'_, Vec<Check>> {
        Box::pin(async move {
            let (pg, redis) = tokio::join!(
                shared::db::ping(&self.pool),
                shared::redis_client::ping(&self.redis)
            );
            let status = |up: bool| if up { "up" } else { "down" }.to_owned();
            vec![
                Check {
                    name: "postgres".into(),
                    status: status(pg),
                },
                Check {
                    name: "redis".into(),
                    status: status(redis),
                },
            ]
        })
    }

    fn refresh_gauges(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let redis_up = shared::redis_client::ping(&self.redis).await;
            shared::metrics::set_dependency_gauges(
                Some(shared::db::status(&self.pool)),
                Some(redis_up),
            );
        })
    }
}
