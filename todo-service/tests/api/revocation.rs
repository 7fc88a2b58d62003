use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::spawn_stack;

const WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
async fn after_logout_the_todo_service_refuses_the_token_within_a_second() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    assert_eq!(
        stack.get(&user, "/v1/todos").send().await.unwrap().status(),
        200
    );

    let resp = stack.auth_post(&user, "/v1/auth/logout", None).await;
    assert_eq!(resp.status(), 204);
    let took = stack.time_until_revoked(&user, Instant::now()).await;

    assert!(took < WITHIN, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_logout_all_every_session_is_refused_within_a_second() {
    let stack = spawn_stack().await;
    let first = stack.user().await;
    let second = stack.login(&first.email, &first.id).await;
    let bystander = stack.user().await;

    assert_eq!(
        stack
            .auth_post(&first, "/v1/auth/logout-all", None)
            .await
            .status(),
        204
    );
    let started = Instant::now();

    for user in [&first, &second] {
        let took = stack.time_until_revoked(user, started).await;
        assert!(took < WITHIN, "took {took:?}");
    }
    assert_eq!(
        stack
            .get(&bystander, "/v1/todos")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_password_change_other_sessions_are_refused_within_a_second() {
    let stack = spawn_stack().await;
    let here = stack.user().await;
    let elsewhere = stack.login(&here.email, &here.id).await;

    let resp = stack
        .auth_post(
            &here,
            "/v1/users/me/password",
            Some(json!({"current_password": crate::helpers::PASSWORD, "new_password": "a brand new passphrase"})),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let took = stack.time_until_revoked(&elsewhere, Instant::now()).await;

    assert!(took < WITHIN, "took {took:?}");
    assert_eq!(
        stack.get(&here, "/v1/todos").send().await.unwrap().status(),
        200,
        "the current session stays"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_token_reuse_kills_the_access_tokens_of_the_session() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let refresh = |token: String| {
        stack
            .client
            .post(format!("{}/v1/auth/refresh", stack.auth))
            .json(&json!({"refresh_token": token}))
            .send()
    };
    assert_eq!(refresh(user.refresh.clone()).await.unwrap().status(), 200);
    assert_eq!(refresh(user.refresh.clone()).await.unwrap().status(), 401);
    let took = stack.time_until_revoked(&user, Instant::now()).await;
    assert!(took < WITHIN, "took {took:?}");
}
