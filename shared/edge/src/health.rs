//! `GET /healthz`, `GET /readyz` and `GET /metrics`, the same on both services.

use std::sync::Arc;

use poem_openapi::payload::{Json, PlainText};
use poem_openapi::{ApiResponse, Object, OpenApi, Tags};

use crate::error_set;
use crate::problem::{ApiErr, ApiError};
use shared_token::verify::BoxFuture;

/// One dependency's state.
#[derive(Debug, Clone, Object)]
pub struct Check {
    /// `postgres`, `redis`, ...
    pub name: String,
    /// `up`, `down` or `degraded`.
    pub status: String,
}

/// What readiness checks: each service lists its dependencies.
pub trait Readiness: Send + Sync {
    fn check(&self) -> BoxFuture<'_, Vec<Check>>;
    /// Refresh the dependency gauges before `/metrics` renders.
    fn refresh_gauges(&self) -> BoxFuture<'_, ()>;
}

/// The checks every service makes: PostgreSQL and Redis answer.
pub async fn dependency_checks(
    pool: &shared_infra::db::PgPool,
    redis: &redis::aio::ConnectionManager,
) -> Vec<Check> {
    let (pg, redis) = tokio::join!(
        shared_infra::db::ping(pool),
        shared_infra::redis_client::ping(redis)
    );
    vec![
        Check::up_or_down("postgres", pg),
        Check::up_or_down("redis", redis),
    ]
}

/// Pool, Redis and rate-limit gauges, before `/metrics` renders.
pub async fn refresh_dependency_gauges(
    pool: &shared_infra::db::PgPool,
    redis: &redis::aio::ConnectionManager,
    limiter: &crate::ratelimit::RateLimiter,
) {
    let redis_up = shared_infra::redis_client::ping(redis).await;
    // The limiter learns Redis is back at its next check; a quiet service should not keep
    // reporting the fallback once Redis answers.
    let degraded = limiter.is_degraded() && !redis_up;
    metrics::gauge!("rate_limits_degraded").set(if degraded { 1.0 } else { 0.0 });
    shared_infra::metrics::set_dependency_gauges(
        Some(shared_infra::db::status(pool)),
        Some(redis_up),
    );
}

impl Check {
    pub fn up_or_down(name: &str, up: bool) -> Self {
        Self {
            name: name.into(),
            status: if up { "up" } else { "down" }.into(),
        }
    }

    /// Rate limits are shared through Redis, or `degraded` to per-process limits while it
    /// is unreachable.
    pub fn rate_limits(limiter: &crate::ratelimit::RateLimiter) -> Self {
        Self {
            name: "rate_limits".into(),
            status: if limiter.is_degraded() {
                "degraded"
            } else {
                "up"
            }
            .into(),
        }
    }
}

#[derive(Tags)]
enum HealthTags {
    /// Liveness, readiness and metrics.
    Health,
}

#[derive(Debug, Clone, Object)]
pub struct HealthBody {
    /// `ok`.
    pub status: String,
    /// Dependency states (readiness; empty for liveness).
    pub checks: Vec<Check>,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Up (and, for readiness, every dependency answers).
    #[oai(status = 200)]
    Ok(Json<HealthBody>),
}

error_set!(pub ReadyErrors: 503);

pub struct HealthApi {
    readiness: Arc<dyn Readiness>,
    drain: crate::server::Drain,
}

impl HealthApi {
    pub fn new(readiness: Arc<dyn Readiness>, drain: crate::server::Drain) -> Self {
        Self { readiness, drain }
    }
}

#[OpenApi(tag = "HealthTags::Health")]
impl HealthApi {
    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> HealthResponse {
        HealthResponse::Ok(Json(HealthBody {
            status: "ok".into(),
            checks: Vec::new(),
        }))
    }

    /// Readiness: 200 only when PostgreSQL and Redis answer; a 503 names what is down.
    ///
    /// From SIGTERM on, also 503 (draining) while requests are still served before the
    /// process stops.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self) -> Result<HealthResponse, ApiErr<ReadyErrors>> {
        if self.drain.is_draining() {
            return Err(
                ApiError::unavailable("Not ready: draining before shutdown.".to_string()).into(),
            );
        }
        let checks = self.readiness.check().await;
        let named = |status: &str| -> Vec<&str> {
            checks
                .iter()
                .filter(|c| c.status == status)
                .map(|c| c.name.as_str())
                .collect()
        };
        let (down, degraded) = (named("down"), named("degraded"));
        if !down.is_empty() {
            let mut detail = format!("Not ready: {} down.", down.join(", "));
            if !degraded.is_empty() {
                detail.push_str(&format!(" Degraded: {}.", degraded.join(", ")));
            }
            return Err(ApiError::unavailable(detail).into());
        }
        let status = if degraded.is_empty() {
            "ok"
        } else {
            "degraded"
        };
        Ok(HealthResponse::Ok(Json(HealthBody {
            status: status.into(),
            checks,
        })))
    }

    /// Prometheus metrics in the text exposition format.
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self) -> PlainText<String> {
        self.readiness.refresh_gauges().await;
        PlainText(shared_infra::metrics::render())
    }
}
