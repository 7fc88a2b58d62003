//! What every response carries, and the framework's own errors as problems.

use crate::helpers::{assert_problem, json, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/v1/nope")).send().await.unwrap();
    assert_problem(resp, 404, "NOT_FOUND").await;
    let resp = app
        .client
        .delete(app.url("/v1/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "POST, OPTIONS");
    assert_problem(resp, 405, "METHOD_NOT_ALLOWED").await;
    let resp = app
        .client
        .put(app.url(&format!("/v1/admin/users/{}", uuid::Uuid::now_v7())))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["allow"], "DELETE, GET, PATCH, OPTIONS");
    assert_problem(resp, 405, "METHOD_NOT_ALLOWED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_limit_is_413() {
    let app = spawn_app().await;
    let big = format!("{{\"email\":\"{}\"}}", "a".repeat(10 * 1024 * 1024));
    // The client is still sending when the 413 is decided; it must read the answer, not a
    // reset connection, every time.
    for _ in 0..5 {
        let resp = app
            .client
            .post(app.url("/v1/auth/signup"))
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_problem(resp, 413, "PAYLOAD_TOO_LARGE").await;
    }
    assert_eq!(app.count("users").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_echoed_when_sane_and_replaced_when_not() {
    let app = spawn_app().await;
    let resp = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let resp = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "bad id with spaces");
    let body = assert_problem(resp, 404, "NOT_FOUND").await;
    assert_eq!(body["request_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_are_on_every_response() {
    let app = spawn_app().await;
    for path in ["/healthz", "/nope", "/openapi.json"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        let h = resp.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert!(
            h.get("strict-transport-security").is_none(),
            "HSTS only when configured"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_allows_only_the_configured_origins() {
    let app = spawn_app().await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/v1/auth/login"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight(crate::helpers::ORIGIN).await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        crate::helpers::ORIGIN
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let evil = preflight("https://evil.example.com").await.unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let (status, body) = json(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (status.as_u16(), body["status"].as_str()),
        (200, Some("ok"))
    );
    let (status, body) = json(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    app.login(&crate::helpers::unique_email(), "whatever whatever")
        .await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"login\""), "{metrics}");
    assert!(metrics.contains("auth_events_total"));
    assert!(metrics.contains("db_pool_connections"));
    assert!(metrics.contains("redis_up"));
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_names_what_is_down() {
    let app = crate::helpers::spawn_app().await;
    let settings = {
        let mut s = app.state.settings.clone();
        s.auth.redis_url = secrecy::SecretString::from("redis://127.0.0.1:1");
        s
    };
    let broken =
        crate::helpers::spawn_on(settings, app.database.clone(), app.redis_prefix.clone()).await;
    let resp = broken
        .client
        .get(broken.url("/readyz"))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 503, "SERVICE_UNAVAILABLE").await;
    assert!(body["detail"].as_str().unwrap().contains("redis"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_member_given_twice_is_refused_by_name_and_changes_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            r#"{"email":"a@example.com","email":"b@example.com","password":"correct horse battery staple"}"#,
            "email",
        ),
        (
            r#"{"email":"a@example.com","password":"x","password":"correct horse battery staple"}"#,
            "password",
        ),
        (
            r#"{"email":"a@example.com","password":"correct horse battery staple","display_name":"a","display_name":null}"#,
            "display_name",
        ),
    ];
    for (body, field) in cases {
        let resp = app
            .client
            .post(app.url("/v1/auth/signup"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(resp, 422, "VALIDATION_FAILED").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
        assert_eq!(problem["errors"][0]["code"], "DUPLICATE_FIELD");
    }
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_that_depend_on_the_origin_say_so() {
    let app = spawn_app().await;
    let origin = crate::helpers::ORIGIN;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/v1/auth/refresh"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    let actual = app
        .client
        .get(app.url("/v1/users/me"))
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    let refused = app
        .client
        .get(app.url("/v1/users/me"))
        .header("origin", "https://evil.example.com")
        .send()
        .await
        .unwrap();
    let plain = app.client.get(app.url("/healthz")).send().await.unwrap();
    for (what, resp) in [
        ("preflight", &preflight),
        ("401", &actual),
        ("disallowed origin", &refused),
        ("no origin", &plain),
    ] {
        let vary: Vec<String> = resp
            .headers()
            .get_all("vary")
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .collect();
        assert!(
            vary.iter()
                .any(|v| v.split(',').any(|p| p.trim() == "origin")),
            "{what} ({}): vary {vary:?}",
            resp.status()
        );
    }
    assert_eq!(actual.status(), 401);
    assert_eq!(refused.status(), 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_authorization_headers_are_refused_whichever_comes_first() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let good = format!("Bearer {}", pair["access_token"].as_str().unwrap());
    for (first, second) in [
        (good.as_str(), "Bearer junk"),
        ("Bearer junk", good.as_str()),
    ] {
        let resp = app
            .client
            .get(app.url("/v1/users/me"))
            .header("authorization", first)
            .header("authorization", second)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 400, "VALIDATION_FAILED").await;
    }
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .header("authorization", "Basic YTpi")
        .header("authorization", "Basic Yzpk")
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let (_, body) = json(resp).await;
    assert_eq!(body["error"], "invalid_request", "{body}");
}
