use crate::helpers::{assert_problem, json, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn sessions_lists_live_sessions_and_marks_the_current_one() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let a = app.login_ok(&email).await;
    let b = app.login_ok(&email).await;
    let revoked = app.login_ok(&email).await;
    app.post_bearer(
        "/v1/auth/logout",
        revoked["access_token"].as_str().unwrap(),
        None,
    )
    .await;

    let (status, body) = json(
        app.get("/v1/auth/sessions", a["access_token"].as_str().unwrap())
            .await,
    )
    .await;

    assert_eq!(status, 200);
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{body}");
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    let current: Vec<_> = items.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["id"], a["session_id"]);
    assert!(items.iter().any(|s| s["id"] == b["session_id"]));
    for s in items {
        for field in ["created_at", "last_used_at", "expires_at", "ip"] {
            assert!(s[field].is_string(), "{field} in {s}");
        }
        assert_eq!(s["ip"], "127.0.0.1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_session_revokes_it_and_others_sessions_are_404() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let a = app.login_ok(&email).await;
    let b = app.login_ok(&email).await;
    let (_, stranger) = app.user_session().await;
    let at = a["access_token"].as_str().unwrap();

    let resp = app
        .client
        .delete(app.url(&format!(
            "/v1/auth/sessions/{}",
            b["session_id"].as_str().unwrap()
        )))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_problem(
        app.get("/v1/users/me", b["access_token"].as_str().unwrap())
            .await,
        401,
        "TOKEN_REVOKED",
    )
    .await;

    for id in [
        stranger["session_id"].as_str().unwrap().to_owned(),
        uuid::Uuid::now_v7().to_string(),
    ] {
        let resp = app
            .client
            .delete(app.url(&format!("/v1/auth/sessions/{id}")))
            .bearer_auth(at)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 404, "NOT_FOUND").await;
    }
    let resp = app
        .get("/v1/users/me", stranger["access_token"].as_str().unwrap())
        .await;
    assert_eq!(resp.status(), 200, "the stranger's session is untouched");
}
