//! The HTTP server loop: hyper with a header-read timeout (so slow-header connections are
//! closed instead of holding a task forever), HTTP/1.1 and HTTP/2, and graceful shutdown
//! that stops accepting, lets in-flight requests finish within a deadline, then returns.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
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
}

impl From<&shared_infra::config::HttpSettings> for ServeOptions {
    fn from(http: &shared_infra::config::HttpSettings) -> Self {
        Self {
            header_read_timeout: Duration::from_secs(http.header_read_timeout_secs),
            shutdown_timeout: Duration::from_secs(http.shutdown_timeout_secs),
        }
    }
}

/// Serve `ep` on `listener` until `shutdown` resolves; returns whether every connection
/// closed within the shutdown deadline.
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
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
    tokio::pin!(shutdown);

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
        let _ = stream.set_nodelay(true);
        let ep = ep.clone();
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let ep = ep.clone();
            async move {
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
                let resp = ep.get_response(req).await;
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
    }

    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {
            tracing::info!("all connections closed");
            true
        }
        () = tokio::time::sleep(opts.shutdown_timeout) => {
            tracing::warn!("shutdown deadline passed with connections still open");
            false
        }
    }
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
