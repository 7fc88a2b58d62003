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
async fn sessions_come_in_cursor_pages_newest_first() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mut logins = Vec::new();
    for _ in 0..3 {
        logins.push(app.login_ok(&email).await);
    }
    let at = logins[0]["access_token"].as_str().unwrap();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/auth/sessions?limit=2&cursor={c}"),
            None => "/v1/auth/sessions?limit=2".to_owned(),
        };
        let (status, body) = json(app.get(&path, at).await).await;
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|s| s["id"].clone()));
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let newest_first: Vec<_> = logins
        .iter()
        .rev()
        .map(|l| l["session_id"].clone())
        .collect();
    assert_eq!(seen, newest_first);

    for query in ["limit=0", "limit=101", "limit=x", "cursor=garbage"] {
        let resp = app.get(&format!("/v1/auth/sessions?{query}"), at).await;
        let problem = assert_problem(resp, 422, "VALIDATION_FAILED").await;
        let field = query.split('=').next().unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{query}");
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
        "not-a-uuid".to_owned(),
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
