//! Slow and idle clients cannot hold the service.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Read until the server closes; what it sent.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    let app = spawn_app_with(|s| s.http.header_read_timeout_secs = 1).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // ...and never the rest.
    read_to_close(&mut stream, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let app = spawn_app_with(|s| s.http.body_read_timeout_secs = 1).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"POST /v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"email\":")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("REQUEST_TIMEOUT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn many_idle_connections_do_not_stop_real_requests() {
    let app = spawn_app_with(|_| {}).await;
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(connect(&app).await);
    }
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let (_, _) = crate::helpers::json(
        app.login(&crate::helpers::unique_email(), "whatever you like")
            .await,
    )
    .await;
    drop(idle);
}
