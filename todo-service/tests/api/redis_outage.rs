//! What Redis outages do: past the staleness bound the TODO service answers 503 rather than
//! accept tokens that might be revoked; after Redis comes back (even empty) revocations are
//! still in force.

use std::time::{Duration, Instant};

use shared::testing::json;

use crate::helpers::{
    PausableProxy, RedisServer, assert_problem, spawn_stack_on, spawn_stack_with, spawn_todo,
};

async fn wait_for_status(
    stack: &crate::helpers::Stack,
    user: &crate::helpers::User,
    want: u16,
    within: Duration,
) -> reqwest::Response {
    let deadline = Instant::now() + within;
    loop {
        let resp = stack.get(user, "/v1/todos").send().await.unwrap();
        if resp.status() == want {
            return resp;
        }
        assert!(
            Instant::now() < deadline,
            "still {} after {within:?}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Until `user`'s token is refused (401) or answered 503: within the lease (3 s), a second,
/// and the staleness bound (1 s in these tests), with half a second to spare.
async fn refused_within_the_lease_bound(
    stack: &crate::helpers::Stack,
    user: &crate::helpers::User,
    started: Instant,
) {
    let bound = Duration::from_secs(3 + 1 + 1) + Duration::from_millis(1500);
    loop {
        let status = stack.get(user, "/v1/todos").send().await.unwrap().status();
        if status == 401 || status == 503 {
            return;
        }
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < bound,
            "the revoked token was still accepted after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The TODO service's readiness says the denylist is down.
async fn assert_not_ready(stack: &crate::helpers::Stack) {
    let resp = stack.client.get(stack.todo_url("/readyz")).send().await;
    let (status, ready) = json(resp.unwrap()).await;
    assert_eq!(status, 503, "readiness says so: {ready}");
}

/// A TODO service started now, like the stack's, once it is ready: its base URL and stop
/// handle.
async fn another_todo_service(
    stack: &crate::helpers::Stack,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let settings = todo_service::config::Settings {
        http: shared::config::HttpSettings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
        todo: stack.todo_state.settings.todo.clone(),
    };
    let (fresh, _state, stop) = spawn_todo(settings).await;
    stack.wait_ready(&fresh).await;
    (fresh, stop)
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_requests_get_503_after_the_bound_then_recover() {
    let mut redis = RedisServer::start().await;
    let stack = spawn_stack_with(redis.url(), |t| t.denylist_max_staleness_secs = 1).await;
    let user = stack.user().await;
    assert_eq!(stack.status(&user, "/v1/todos").await, 200);

    redis.stop();
    let resp = wait_for_status(&stack, &user, 503, Duration::from_secs(5)).await;
    let body = assert_problem(resp, 503, "SERVICE_UNAVAILABLE").await;
    assert!(body["detail"].as_str().unwrap().contains("revocations"));
    assert_not_ready(&stack).await;

    redis.restart().await;
    wait_for_status(&stack, &user, 200, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_token_stays_revoked_after_redis_restarts_empty() {
    let mut redis = RedisServer::start().await;
    let stack = spawn_stack_with(redis.url(), |t| t.denylist_max_staleness_secs = 1).await;
    let user = stack.user().await;
    let bystander = stack.user().await;
    stack.logout(&user).await;
    stack.time_until_revoked(&user, Instant::now()).await;

    redis.restart().await; // empty: no persistence
    wait_for_status(&stack, &bystander, 200, Duration::from_secs(10)).await;
    let resp = stack.get(&user, "/v1/todos").send().await.unwrap();
    assert_problem(resp, 401, "TOKEN_REVOKED").await;

    // A TODO service that starts now has seen nothing: it learns the revocation from Redis,
    // which the auth service refilled from its durable record.
    let (fresh, _stop) = another_todo_service(&stack).await;
    let resp = stack
        .client
        .get(format!("{fresh}/v1/todos"))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "TOKEN_REVOKED").await;
    let resp = stack
        .client
        .get(format!("{fresh}/v1/todos"))
        .bearer_auth(&bystander.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_the_auth_service_cannot_publish_is_never_honoured_open() {
    let redis = RedisServer::start().await;
    let proxy = PausableProxy::start(redis.port).await;
    // The auth service reaches Redis through the proxy; the TODO service directly.
    let stack = spawn_stack_on(proxy.url(), redis.url(), |t| {
        t.denylist_max_staleness_secs = 1
    })
    .await;
    let user = stack.user().await;
    let bystander = stack.user().await;
    assert_eq!(stack.status(&user, "/v1/todos").await, 200);

    // The auth service is cut off from Redis: its logout commits (204) but cannot be
    // published. The TODO service still reaches Redis, and must not keep trusting it.
    proxy.pause();
    let started = Instant::now();
    stack.logout(&user).await;
    refused_within_the_lease_bound(&stack, &user, started).await;
    assert_not_ready(&stack).await;

    // Once the auth service reaches Redis again, the revocation is published and the lease
    // renewed: the bystander is served, the revoked token refused.
    proxy.resume();
    wait_for_status(&stack, &bystander, 200, Duration::from_secs(10)).await;
    let resp = stack.get(&user, "/v1/todos").send().await.unwrap();
    assert_problem(resp, 401, "TOKEN_REVOKED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revocations_redis_lost_behind_a_kept_lease_are_replayed() {
    let redis = RedisServer::start().await;
    let stack = spawn_stack_with(redis.url(), |t| t.denylist_max_staleness_secs = 1).await;
    let user = stack.user().await;
    stack.logout(&user).await;
    stack.time_until_revoked(&user, Instant::now()).await;

    // A failover to a replica that lagged (or an eviction): the lease survived, the entries
    // did not.
    let prefix = &stack.auth_state.settings.auth.redis_prefix;
    let mut conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!("{prefix}denylist"))
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!members.is_empty());
    redis::cmd("DEL")
        .arg(format!("{prefix}denylist"))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    // A TODO service that starts now learns only what Redis holds; the auth service finds
    // Redis holding fewer revocations than it published, and replays.
    let (fresh, _stop) = another_todo_service(&stack).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let resp = stack
            .client
            .get(format!("{fresh}/v1/todos"))
            .bearer_auth(&user.access)
            .send()
            .await
            .unwrap();
        if resp.status() == 401 {
            assert_problem(resp, 401, "TOKEN_REVOKED").await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the lost revocation was not replayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_writer_to_stop_keeps_no_lease_while_another_is_cut_off() {
    let redis = RedisServer::start().await;
    let proxy = PausableProxy::start(redis.port).await;
    let mut stack = spawn_stack_with(redis.url(), |t| t.denylist_max_staleness_secs = 1).await;
    let user = stack.user().await;
    // A second auth service on the same database, reaching Redis through the proxy.
    let mut settings = stack.auth_state.settings.clone();
    settings.http.listen_addr = "127.0.0.1:0".parse().unwrap();
    settings.auth.redis_url = secrecy::SecretString::from(proxy.url());
    let other = auth_service::startup::Application::build(settings)
        .await
        .unwrap();
    let other_base = format!("http://{}", other.addr());
    let (_stop_other, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(other.run_until(async {
        let _ = rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The second is cut off from Redis; the first stops cleanly. It must not vouch for a
    // denylist the second can no longer keep complete.
    proxy.pause();
    stack.stop_auth();
    let resp = stack
        .client
        .post(format!("{other_base}/v1/auth/logout"))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    refused_within_the_lease_bound(&stack, &user, Instant::now()).await;
}
