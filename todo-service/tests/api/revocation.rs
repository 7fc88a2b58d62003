use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::spawn_stack;

const WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread")]
async fn after_logout_the_todo_service_refuses_the_token_within_a_second() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    assert_eq!(stack.status(&user, "/v1/todos").await, 200);

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
    assert_eq!(stack.status(&bystander, "/v1/todos").await, 200);
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
        stack.status(&here, "/v1/todos").await,
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

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_of_a_user_with_the_most_sessions_allowed_is_refused_within_a_second() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let max = stack.auth_state.settings.auth.max_sessions_per_user as usize;
    // The other sessions, as the auth service records them, each with a token of its own.
    let others: Vec<String> = (1..max).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    {
        use diesel_async::{AsyncConnection, RunQueryDsl};
        let mut conn = diesel_async::AsyncPgConnection::establish(&stack.auth_db)
            .await
            .unwrap();
        let values: Vec<String> = others
            .iter()
            .map(|sid| {
                format!(
                    "('{sid}', '{}', now(), now() + interval '1 day', 'body')",
                    user.id
                )
            })
            .collect();
        diesel::sql_query(format!(
            "INSERT INTO sessions (id, user_id, last_used_at, expires_at, refresh_delivery) \
             VALUES {}",
            values.join(", ")
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let tokens: Vec<crate::helpers::User> = others
        .iter()
        .map(|sid| {
            let mut claims = stack.claims_for(&user.id, "user", "todos:read");
            claims.sid = Some(sid.clone());
            crate::helpers::User {
                access: stack.sign(&claims),
                id: user.id.clone(),
                email: user.email.clone(),
                refresh: String::new(),
            }
        })
        .collect();

    assert_eq!(
        stack
            .auth_post(&user, "/v1/auth/logout-all", None)
            .await
            .status(),
        204
    );
    let started = Instant::now();

    let took = stack.time_until_revoked(&user, started).await;
    assert!(took < WITHIN, "took {took:?}");
    let answers = futures_util::future::join_all(
        tokens
            .iter()
            .map(|t| async { stack.get(t, "/v1/todos").send().await.unwrap().status() }),
    )
    .await;
    let accepted = answers.iter().filter(|s| s.as_u16() != 401).count();
    assert_eq!(accepted, 0, "of {} sessions", tokens.len());
    assert!(
        started.elapsed() < WITHIN,
        "took {:?} for all {max} sessions",
        started.elapsed()
    );
}
