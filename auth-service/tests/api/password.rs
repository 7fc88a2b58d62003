use serde_json::json;

use crate::helpers::{PASSWORD, assert_problem, spawn_app};

const NEW: &str = "a completely different passphrase";

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_password_revokes_every_other_session() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let here = app.login_ok(&email).await;
    let elsewhere = app.login_ok(&email).await;
    let at = here["access_token"].as_str().unwrap();

    let resp = app
        .post_bearer(
            "/v1/users/me/password",
            at,
            Some(json!({"current_password": PASSWORD, "new_password": NEW})),
        )
        .await;

    assert_eq!(resp.status(), 204);
    assert_eq!(
        app.get("/v1/users/me", at).await.status(),
        200,
        "this session stays"
    );
    let other = app
        .get("/v1/users/me", elsewhere["access_token"].as_str().unwrap())
        .await;
    assert_problem(other, 401, "TOKEN_REVOKED").await;
    assert!(
        app.denylisted(&format!(
            "sid:{}",
            elsewhere["session_id"].as_str().unwrap()
        ))
        .await
    );
    assert_problem(
        app.login(&email, PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(app.login(&email, NEW).await.status(), 200);
    assert_eq!(
        app.count("audit_log WHERE event = 'password_changed'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_current_password_or_weak_new_one_changes_nothing() {
    let app = spawn_app().await;
    let (email, pair) = app.user_session().await;
    let at = pair["access_token"].as_str().unwrap();

    let wrong = app
        .post_bearer(
            "/v1/users/me/password",
            at,
            Some(json!({"current_password": "nope nope nope", "new_password": NEW})),
        )
        .await;
    assert_problem(wrong, 401, "INVALID_CREDENTIALS").await;

    let weak = app
        .post_bearer(
            "/v1/users/me/password",
            at,
            Some(json!({"current_password": PASSWORD, "new_password": "12345678"})),
        )
        .await;
    let body = assert_problem(weak, 422, "VALIDATION_FAILED").await;
    assert_eq!(body["errors"][0]["field"], "new_password");

    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
    assert_eq!(app.count("sessions WHERE revoked_at IS NOT NULL").await, 0);
}
