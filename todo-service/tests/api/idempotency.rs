use serde_json::json;
use shared::testing::json;

use crate::helpers::{assert_problem, spawn_stack};

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_with_the_same_key_and_body_replays_the_first_response() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let body = json!({"title": "pay rent", "done": false});
    let send = || {
        stack
            .post(&user, "/v1/todos", &body)
            .header("idempotency-key", "rent-2030-01")
            .send()
    };

    let first = send().await.unwrap();
    let first_location = first.headers()["location"].clone();
    assert!(first.headers().get("idempotent-replayed").is_none());
    let (status, created) = json(first).await;
    assert_eq!(status, 201);

    let again = send().await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["location"], first_location);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let (_, replayed) = json(again).await;
    assert_eq!(replayed, created);

    // Key order in the body does not matter; content does.
    let reordered = stack
        .client
        .post(stack.todo_url("/v1/todos"))
        .bearer_auth(&user.access)
        .header("content-type", "application/json")
        .header("idempotency-key", "rent-2030-01")
        .body(r#"{"done": false, "title": "pay rent"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reordered.status(), 201);

    let different = stack
        .post(&user, "/v1/todos", &json!({"title": "pay the other rent"}))
        .header("idempotency-key", "rent-2030-01")
        .send()
        .await
        .unwrap();
    let body = assert_problem(different, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(body["errors"][0]["code"], "REUSED_WITH_DIFFERENT_BODY");

    let (_, page) = json(stack.get(&user, "/v1/todos").send().await.unwrap()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_retries_with_one_key_create_exactly_one_todo() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let body = json!({"title": "only once"});

    let attempts = (0..10).map(|_| {
        stack
            .post(&user, "/v1/todos", &body)
            .header("idempotency-key", "parallel-1")
            .send()
    });
    let responses = futures_util::future::join_all(attempts).await;

    let mut ids = Vec::new();
    for resp in responses {
        let (status, todo) = json(resp.unwrap()).await;
        assert_eq!(status, 201, "{todo}");
        ids.push(todo["id"].as_str().unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "every retry got the same todo");
    let (_, page) = json(stack.get(&user, "/v1/todos").send().await.unwrap()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_are_per_owner_and_expire() {
    let stack = spawn_stack().await;
    let alice = stack.user().await;
    let bob = stack.user().await;
    let body = json!({"title": "same key, different owners"});
    let a = stack
        .post(&alice, "/v1/todos", &body)
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap();
    let b = stack
        .post(&bob, "/v1/todos", &body)
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap();
    let (_, a) = json(a).await;
    let (_, b) = json(b).await;
    assert_ne!(a["id"], b["id"]);

    {
        use diesel_async::{AsyncConnection, RunQueryDsl};
        let mut conn = diesel_async::AsyncPgConnection::establish(&stack.todo_db)
            .await
            .unwrap();
        diesel::sql_query("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let after = stack
        .post(&alice, "/v1/todos", &body)
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap();
    assert!(after.headers().get("idempotent-replayed").is_none());
    let (_, after) = json(after).await;
    assert_ne!(after["id"], a["id"], "an expired key creates anew");

    let bad = stack
        .post(&alice, "/v1/todos", &body)
        .header("idempotency-key", "with space")
        .send()
        .await
        .unwrap();
    let problem = assert_problem(bad, 422, "VALIDATION_FAILED").await;
    assert_eq!(problem["errors"][0]["field"], "Idempotency-Key");
}
