//! Shutdown in two steps: a drain (readiness 503, requests still served, each response
//! closing its connection), then no new connections while in-flight requests finish.

use std::time::{Duration, Instant};

use crate::helpers::*;
use shared::testing::json;

#[tokio::test(flavor = "multi_thread")]
async fn draining_says_not_ready_while_it_still_serves_then_stops_accepting() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let mut settings = stack.todo_state.settings.clone();
    settings.http.listen_addr = "127.0.0.1:0".parse().unwrap();
    settings.http.shutdown_drain_secs = 3;
    let (base, _state, stop) = spawn_todo(settings).await;
    stack.wait_ready(&base).await;
    // A kept-alive connection made before the signal.
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{base}/v1/todos"))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("connection").is_none());

    let signalled = Instant::now();
    stop.send(()).unwrap();
    // Readiness turns 503 at once, naming the drain.
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let resp = client.get(format!("{base}/readyz")).send().await.unwrap();
        if resp.status() == 503 {
            let body: serde_json::Value = resp.json().await.unwrap();
            assert!(
                body["detail"].as_str().unwrap().contains("draining"),
                "{body}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "readiness did not turn 503");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Meanwhile requests are served, each closing its connection after the response.
    let resp = client
        .post(format!("{base}/v1/todos"))
        .bearer_auth(&user.access)
        .json(&serde_json::json!({"title": "during the drain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["connection"], "close");
    assert!(signalled.elapsed() < Duration::from_secs(3));

    // After the drain the port refuses new connections.
    let deadline = signalled + Duration::from_secs(6);
    loop {
        let fresh = reqwest::Client::new();
        if fresh.get(format!("{base}/healthz")).send().await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "still accepting after the drain");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(signalled.elapsed() >= Duration::from_millis(2900));
    // The todo created during the drain exists (read through the stack's own service).
    let (status, page) = json(stack.get(&user, "/v1/todos").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
}
