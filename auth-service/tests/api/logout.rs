use serde_json::json;

use crate::helpers::{ORIGIN, assert_problem, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn logout_with_the_bearer_revokes_the_session_and_repeating_is_harmless() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let at = pair["access_token"].as_str().unwrap();

    let first = app.post_bearer("/v1/auth/logout", at, None).await;
    let again = app.post_bearer("/v1/auth/logout", at, None).await;

    assert_eq!(first.status(), 204);
    assert_eq!(again.status(), 204);
    assert_problem(app.get("/v1/users/me", at).await, 401, "TOKEN_REVOKED").await;
    let refresh = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    assert_problem(refresh, 401, "REFRESH_TOKEN_INVALID").await;
    let sid = pair["session_id"].as_str().unwrap();
    assert!(app.denylisted(&format!("sid:{sid}")).await);
    assert_eq!(
        app.count("revocations WHERE published_at IS NOT NULL")
            .await,
        1
    );
    assert_eq!(app.count("audit_log WHERE event = 'logout'").await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_with_a_refresh_token_in_the_body() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;

    let resp = app
        .post_json(
            "/v1/auth/logout",
            &json!({"refresh_token": pair["refresh_token"]}),
        )
        .await;

    assert_eq!(resp.status(), 204);
    assert_eq!(app.count("sessions WHERE revoked_at IS NOT NULL").await, 1);
    let resp = app
        .post_json("/v1/auth/logout", &json!({"refresh_token": "unknown"}))
        .await;
    assert_eq!(resp.status(), 204, "unknown tokens are harmless too");
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_with_the_cookie_checks_origin_and_clears_it() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let resp = app.login_with_cookie(&email).await;
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();

    let evil = app
        .client
        .post(app.url("/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    assert_problem(evil, 403, "CSRF_FAILED").await;
    assert_eq!(app.count("sessions WHERE revoked_at IS NULL").await, 1);

    let ok = app
        .client
        .post(app.url("/v1/auth/logout"))
        .header("cookie", &cookie)
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);
    let cleared = ok.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(app.count("sessions WHERE revoked_at IS NULL").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_without_any_token_is_401() {
    let app = spawn_app().await;
    let resp = app
        .client
        .post(app.url("/v1/auth/logout"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "TOKEN_INVALID").await;
    let resp = app.post_bearer("/v1/auth/logout", "garbage", None).await;
    assert_problem(resp, 401, "TOKEN_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_all_revokes_every_session_of_the_caller_only() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let a = app.login_ok(&email).await;
    let b = app.login_ok(&email).await;
    let (_, other) = app.user_session().await;

    let resp = app
        .post_bearer(
            "/v1/auth/logout-all",
            a["access_token"].as_str().unwrap(),
            None,
        )
        .await;

    assert_eq!(resp.status(), 204);
    for pair in [&a, &b] {
        let me = app
            .get("/v1/users/me", pair["access_token"].as_str().unwrap())
            .await;
        assert_problem(me, 401, "TOKEN_REVOKED").await;
        assert!(
            app.denylisted(&format!("sid:{}", pair["session_id"].as_str().unwrap()))
                .await
        );
    }
    assert_eq!(
        app.get("/v1/users/me", other["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(app.count("audit_log WHERE event = 'logout_all'").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_outlives_its_tokens_by_the_largest_leeway_any_verifier_may_allow() {
    // This service allows no leeway; a verifier may allow up to the bound.
    let app = crate::helpers::spawn_app_with(|s| s.auth.clock_leeway_secs = 0).await;
    let (_, pair) = app.user_session().await;
    let at = pair["access_token"].as_str().unwrap();
    let exp = crate::helpers::claims(at)["exp"].as_i64().unwrap();

    assert_eq!(
        app.post_bearer("/v1/auth/logout", at, None).await.status(),
        204
    );

    let sid = pair["session_id"].as_str().unwrap();
    let mut redis = app.redis().await;
    let kept_until: f64 = redis::cmd("ZSCORE")
        .arg(format!("{}denylist", app.redis_prefix))
        .arg(format!("sid:{sid}"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        kept_until as i64 >= exp + shared::verify::MAX_LEEWAY_SECS,
        "kept until {kept_until}, but a verifier accepts the token until {}",
        exp + shared::verify::MAX_LEEWAY_SECS
    );
}
