//! Keys come from the JWKS: cached, refetched on an unknown kid (rate-limited), and still
//! working when the auth service is down.

use std::time::Duration;

use auth_service::config::SigningAlg;
use auth_service::crypto::keys;

use crate::helpers::{Stack, User, assert_problem, spawn_stack, spawn_stack_with};

#[tokio::test(flavor = "multi_thread")]
async fn made_up_kids_refetch_the_jwks_at_most_once_per_interval() {
    let stack = spawn_stack_with(shared::testing::redis_url(), |t| {
        t.jwks_min_refetch_secs = 60
    })
    .await;
    let user = stack.user().await;
    let foreign = keys::generate(SigningAlg::EdDSA).unwrap();
    let key = keys::encoding_key(SigningAlg::EdDSA, &foreign.private_der);
    let before = stack.todo_state.keys.fetch_count();

    for _ in 0..20 {
        let token = made_up_kid_token(&stack, &user, &key);
        let resp = stack.get_with_token(&token, "/v1/todos").await;
        assert_problem(resp, 401, "TOKEN_INVALID").await;
    }

    assert!(
        stack.todo_state.keys.fetch_count() - before <= 1,
        "at most one refetch"
    );
    assert_eq!(stack.status(&user, "/v1/todos").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn cached_keys_keep_working_while_the_auth_service_is_down() {
    let mut stack = spawn_stack().await;
    let user = stack.user().await;
    stack.stop_auth();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new connection is refused (one kept alive from before would still get an answer,
    // and be closed after it: see shutdown.rs).
    assert!(
        reqwest::Client::new()
            .get(format!("{}/healthz", stack.auth))
            .send()
            .await
            .is_err(),
        "auth is down"
    );

    assert_eq!(stack.status(&user, "/v1/todos").await, 200);
    // The auth service left cleanly: its denylist lease is kept while no writer runs, so
    // the TODO service goes on serving well past the lease.
    tokio::time::sleep(auth_service::service::revocation::LEASE + Duration::from_secs(2)).await;
    // On a new connection: the pooled one idled past the server's header-read timeout.
    let resp = reqwest::Client::new()
        .get(stack.todo_url("/v1/todos"))
        .bearer_auth(&user.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_key_is_fetched_when_its_first_token_arrives() {
    let stack = spawn_stack_with(shared::testing::redis_url(), |t| {
        t.jwks_min_refetch_secs = 1
    })
    .await;
    let user = stack.user().await;
    let settings = &stack.auth_state.settings;
    let mut conn = {
        use diesel_async::AsyncConnection;
        diesel_async::AsyncPgConnection::establish(&stack.auth_db)
            .await
            .unwrap()
    };
    auth_service::crypto::keyring::rotate(
        &mut conn,
        &auth_service::startup::key_cipher(settings).unwrap(),
        SigningAlg::ES256,
        chrono::Duration::zero(),
        auth_service::startup::token_horizon(settings),
    )
    .await
    .unwrap();
    stack.auth_state.keys.load(&mut conn).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let rotated: User = stack.login(&user.email, &user.id).await;
    assert_eq!(shared::testing::jwt_header(&rotated.access)["alg"], "ES256");
    assert_eq!(stack.status(&rotated, "/v1/todos").await, 200);
    assert_eq!(
        stack.status(&user, "/v1/todos").await,
        200,
        "old tokens too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn made_up_kids_in_flight_together_refetch_the_jwks_once() {
    let stack = spawn_stack_with(shared::testing::redis_url(), |t| {
        t.jwks_min_refetch_secs = 1
    })
    .await;
    let user = stack.user().await;
    let foreign = keys::generate(SigningAlg::EdDSA).unwrap();
    let key = keys::encoding_key(SigningAlg::EdDSA, &foreign.private_der);
    let requests: Vec<_> = (0..40)
        .map(|_| {
            let token = made_up_kid_token(&stack, &user, &key);
            stack
                .client
                .get(stack.todo_url("/v1/todos"))
                .bearer_auth(token)
        })
        .collect();
    // Let the interval since the start-up fetch run out.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = stack.todo_state.keys.fetch_count();

    let answers =
        futures_util::future::join_all(requests.into_iter().map(|r| async { r.send().await }))
            .await;

    for resp in answers {
        assert_problem(resp.unwrap(), 401, "TOKEN_INVALID").await;
    }
    assert_eq!(stack.todo_state.keys.fetch_count() - before, 1);
}

/// A token for `user` signed with `key` (not the auth service's) under a `kid` no JWKS has.
fn made_up_kid_token(stack: &Stack, user: &User, key: &jsonwebtoken::EncodingKey) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.typ = Some("at+jwt".into());
    header.kid = Some(uuid::Uuid::new_v4().to_string());
    let claims = stack.claims_for(&user.id, "user", "todos:read");
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}
