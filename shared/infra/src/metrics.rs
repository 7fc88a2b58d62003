//! Prometheus metrics, exposed at `GET /metrics`.
//!
//! - `http_requests_total{route,method,status}` and
//!   `http_request_duration_seconds{route,method,status}` for every request, where `route`
//!   is the OpenAPI operation id (`unmatched` for unknown routes, so made-up paths cannot
//!   blow up the label set);
//! - `db_pool_connections{state}` and `redis_up`, refreshed on every scrape;
//! - `auth_events_total{kind}` for audited auth events (login success and failure, ...);
//! - what an operator needs to see a fault: `db_pool_failures_total{reason}` (no connection
//!   within the acquire timeout, or PostgreSQL refusing), `redis_errors_total{op}`,
//!   `rate_limits_degraded` (1 while limits fall back to process memory), and per service
//!   the rest (the auth service's hashing queue and revocation publishing, the TODO
//!   service's denylist staleness): docs/operations.md lists them all.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder (installed on first use).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("http_request_duration_seconds".into()),
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ],
            )
            .expect("static bucket list is not empty");
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (only possible in tests that install their own):
            // keep a detached handle so /metrics still answers.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        // A histogram keeps every sample until upkeep folds them into its buckets, which
        // the recorder installed this way leaves to its owner: without it, memory grew by
        // some 20 bytes a request between scrapes (found by the benchmark's RSS column).
        let upkept = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkept.run_upkeep();
                }
            })
            .expect("spawning the metrics upkeep thread");
        // Counters an alert watches exist from the start (at zero), so that `increase()`
        // sees their first event and a dashboard shows them before anything went wrong.
        for reason in [
            "timeout",
            "backend",
            "lost",
            "read_only",
            "statement_timeout",
        ] {
            metrics::counter!("db_pool_failures_total", "reason" => reason).increment(0);
        }
        metrics::counter!("redis_errors_total", "op" => "rate_limit").increment(0);
        metrics::counter!("http_handler_panics_total").increment(0);
        handle
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Record one finished request.
pub fn record_request(route: &str, method: &str, status: u16, seconds: f64) {
    let labels = [
        ("route", route.to_owned()),
        ("method", method.to_owned()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(seconds);
}

/// Count one auth event (`login_succeeded`, `login_failed`, `refresh_reused`, ...).
pub fn auth_event(kind: &'static str) {
    metrics::counter!("auth_events_total", "kind" => kind).increment(1);
}

/// No connection, `timeout` (pool exhausted) or `backend` (PostgreSQL down), or a query
/// that could not be run: the connection `lost`, the server `read_only`, or a
/// `statement_timeout`.
pub fn db_pool_failure(reason: &'static str) {
    metrics::counter!("db_pool_failures_total", "reason" => reason).increment(1);
}

/// A Redis operation failed (`rate_limit`, `denylist_sync`, `denylist_publish`, ...).
pub fn redis_error(op: &'static str) {
    metrics::counter!("redis_errors_total", "op" => op).increment(1);
}

/// Pool and Redis health, set just before rendering.
pub fn set_dependency_gauges(pool: Option<deadpool_status::PoolStatus>, redis_up: Option<bool>) {
    if let Some(status) = pool {
        metrics::gauge!("db_pool_connections", "state" => "size").set(status.size as f64);
        metrics::gauge!("db_pool_connections", "state" => "available").set(status.available as f64);
        metrics::gauge!("db_pool_connections", "state" => "waiting").set(status.waiting as f64);
        metrics::gauge!("db_pool_connections", "state" => "max").set(status.max_size as f64);
    }
    if let Some(up) = redis_up {
        metrics::gauge!("redis_up").set(if up { 1.0 } else { 0.0 });
    }
}

/// The pool figures `/metrics` reports, independent of the pool crate's types.
pub mod deadpool_status {
    #[derive(Debug, Clone, Copy)]
    pub struct PoolStatus {
        pub size: usize,
        pub available: usize,
        pub waiting: usize,
        pub max_size: usize,
    }
}

/// The text exposition.
pub fn render() -> String {
    handle().render()
}
