//! The HTTP server loop: hyper with a header-read timeout (so slow-header connections are
//! closed instead of holding a task forever), HTTP/1.1 and HTTP/2, and graceful shutdown in
//! two steps: first a drain (readiness answers 503 while every request is still served, each
//! HTTP/1 response closing its connection, so a load balancer that probes readiness stops
//! sending), then it stops accepting (refused connections, which a proxy retries elsewhere)
//! and lets in-flight requests finish within a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Addr, Endpoint, EndpointExt, Request};
use tokio::net::TcpListener;

/// Connection-level limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// A client must send a request's complete headers within this time, counted from its
    /// first byte or, on a kept-alive connection, from the end of the previous response.
    pub header_read_timeout: Duration,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// How long, after the signal, requests are still accepted while readiness says 503.
    pub drain: Duration,
}

/// Whether the server is draining: shared by the server loop (which sets it) and readiness
/// (which then answers 503).
#[derive(Debug, Clone, Default)]
pub struct Drain(Arc<AtomicBool>);

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl From<&shared_infra::config::HttpSettings> for ServeOptions {
    fn from(http: &shared_infra::config::HttpSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            shutdown_timeout: Duration::from_secs(http.shutdown_timeout_secs),
            drain: Duration::from_secs(http.shutdown_drain_secs),
        }
    }
}

/// Serve `ep` on `listener` until `shutdown` resolves, then drain for `opts.drain` (marking
/// `drain`), then stop accepting; returns whether every connection closed within the
/// shutdown deadline.
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
    drain: Drain,
) -> bool
where
    E: Endpoint + 'static,
{
    let ep = Arc::new(ep.map_to_response());
    let local = listener.local_addr().ok();
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let (marker, drain_for) = (drain.clone(), opts.drain);
    let shutdown = async move {
        shutdown.await;
        // From here on every HTTP/1 response closes its connection.
        marker.start();
        if !drain_for.is_zero() {
            tracing::info!(
                secs = drain_for.as_secs_f64(),
                "draining: readiness answers 503"
            );
            tokio::time::sleep(drain_for).await;
        }
    };
    tokio::pin!(shutdown);
    let serve_conn = |stream: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        let _ = stream.set_nodelay(true);
        let ep = ep.clone();
        let drain = drain.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let ep = ep.clone();
            let drain = drain.clone();
            async move {
                let http1 = req.version() < http::Version::HTTP_2;
                let local = LocalAddr(
                    local
                        .map(Addr::SocketAddr)
                        .unwrap_or(Addr::Custom("", "".into())),
                );
                let req = Request::from((
                    req,
                    local,
                    RemoteAddr(Addr::SocketAddr(peer)),
                    http::uri::Scheme::HTTP,
                ));
                let mut resp = ep.get_response(req).await;
                if http1 && drain.is_draining() {
                    // The connection ends after this response, cleanly: the client (a proxy)
                    // reads that it must not reuse it, so no request races its closing.
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                Ok::<_, Infallible>(http::Response::from(resp))
            }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "connection closed with an error");
            }
        });
    };

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        serve_conn(stream, peer);
    }

    // Connections the kernel completed but nobody accepted yet would be reset when the
    // listener closes, after their clients sent a request: accept them first, so that from
    // here on a client sees either a served request or a refused connection (which a proxy
    // retries elsewhere, whatever the method).
    for (stream, peer) in accept_queued(listener) {
        serve_conn(stream, peer);
    }
    let deadline = tokio::time::Instant::now() + opts.shutdown_timeout;
    tracing::info!("shutting down: no new connections; finishing in-flight requests");
    // Each connection closes after its next response. One kept idle is closed by its client
    // (a proxy's idle timeout) or, after IDLE_GRACE, by us: a proxy may be picking that very
    // connection for its next request, which would then fail unanswered.
    let idle_grace = (tokio::time::Instant::now() + IDLE_GRACE).min(deadline);
    while graceful.count() > 0 && tokio::time::Instant::now() < idle_grace {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::select! {
        biased;
        () = graceful.shutdown() => {
            tracing::info!("all connections closed");
            true
        }
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!("shutdown deadline passed with connections still open");
            false
        }
    }
}

/// How long, once the listener is closed, kept-alive connections may stay idle before the
/// server closes them itself (a proxy in front should close its idle ones sooner).
const IDLE_GRACE: Duration = Duration::from_secs(5);

/// The most queued connections taken at shutdown (Linux's default `somaxconn` is 4096).
const QUEUED_AT_MOST: usize = 4096;

/// Every connection already waiting in the listener's queue, then the listener closed.
fn accept_queued(listener: TcpListener) -> Vec<(tokio::net::TcpStream, std::net::SocketAddr)> {
    let mut out = Vec::new();
    let Ok(listener) = listener.into_std() else {
        return out;
    };
    // Already non-blocking (tokio's): accept until the queue is empty (bounded: a queue
    // refilling as fast as it is read must not keep the process from stopping; what is
    // left is reset). A connection aborted while queued is skipped; another error ends it.
    for _ in 0..QUEUED_AT_MOST {
        match listener.accept() {
            Ok((stream, peer)) => {
                let ready = stream
                    .set_nonblocking(true)
                    .and_then(|()| tokio::net::TcpStream::from_std(stream));
                if let Ok(stream) = ready {
                    out.push((stream, peer));
                }
            }
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionAborted => continue,
            Err(_) => break,
        }
    }
    out
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}
