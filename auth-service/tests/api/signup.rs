use serde_json::json;

use crate::helpers::{PASSWORD, assert_problem, json, spawn_app, unique_email};

#[tokio::test(flavor = "multi_thread")]
async fn signup_returns_201_with_the_user_and_no_hash() {
    let app = spawn_app().await;
    let email = unique_email();

    let resp = app
        .post_json(
            "/v1/auth/signup",
            &json!({"email": format!("  {email}  "), "password": PASSWORD, "display_name": " Ann "}),
        )
        .await;

    let (status, body) = json(resp).await;
    assert_eq!(status, 201);
    assert_eq!(body["email"], email.as_str(), "trimmed");
    assert_eq!(body["display_name"], "Ann");
    assert_eq!(body["role"], "user");
    assert_eq!(body["disabled"], false);
    assert_eq!(body["email_verified"], false);
    assert_eq!(body["mfa_enabled"], false);
    let id = body["id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert!(body.get("password_hash").is_none() && body.get("password").is_none());
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 9, "exactly the User fields: {keys:?}");
    assert_eq!(
        app.count(&format!(
            "audit_log WHERE event = 'signup' AND subject_id = '{id}'"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_with_a_taken_email_in_any_case_is_409() {
    let app = spawn_app().await;
    let email = app.new_user().await;

    let resp = app.signup(&email.to_uppercase(), PASSWORD).await;

    assert_problem(resp, 409, "EMAIL_TAKEN").await;
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_signups_with_one_email_create_one_account() {
    let app = spawn_app().await;
    let email = unique_email();

    let attempts = (0..4).map(|_| app.signup(&email, PASSWORD));
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();

    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_signups_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let long_name = "x".repeat(101);
    let cases = [
        (
            json!({"email": "not-an-email", "password": PASSWORD}),
            422,
            Some("email"),
        ),
        (
            json!({"email": unique_email(), "password": "short"}),
            422,
            Some("password"),
        ),
        (
            json!({"email": unique_email(), "password": "password123"}),
            422,
            Some("password"),
        ),
        (
            json!({"email": unique_email(), "password": "x".repeat(257)}),
            422,
            Some("password"),
        ),
        (
            json!({"email": unique_email(), "password": PASSWORD, "display_name": long_name}),
            422,
            Some("display_name"),
        ),
        (json!({"email": unique_email()}), 422, Some("password")),
        (
            json!({"email": unique_email(), "password": PASSWORD, "role": "admin"}),
            422,
            Some("role"),
        ),
        (
            json!({"email": {"a": 1}, "password": PASSWORD}),
            422,
            Some("email"),
        ),
        (
            json!({"email": unique_email(), "password": 12345678}),
            422,
            Some("password"),
        ),
        (json!([]), 422, Some("body")),
    ];
    for (body, status, field) in cases {
        let resp = app.post_json("/v1/auth/signup", &body).await;
        let problem = assert_problem(resp, status, "VALIDATION_FAILED").await;
        if let Some(field) = field {
            let errors = problem["errors"].as_array().expect("field errors");
            assert!(
                errors.iter().any(|e| e["field"] == field),
                "{body} -> {problem}"
            );
        }
    }
    assert_eq!(app.count("users").await, 0);
    assert_eq!(app.count("audit_log").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_breached_password_says_which_rule_failed() {
    let app = spawn_app().await;

    for (password, rule) in [
        ("iloveyou", "BREACHED_PASSWORD"),
        ("P@ssw0rd", "BREACHED_PASSWORD"),
        ("abcdefghijk", "COMMON_PASSWORD"),
        ("short", "TOO_SHORT"),
    ] {
        let problem = assert_problem(
            app.signup(&unique_email(), password).await,
            422,
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], "password");
        assert_eq!(problem["errors"][0]["code"], rule, "{password}");
    }
    // Long Unicode passphrases are fine, and verified exactly as sent.
    let email = unique_email();
    let long: String = "Съешь же ещё этих мягких французских булок, да выпей чаю. ".repeat(4);
    assert_eq!(app.signup(&email, &long).await.status(), 201);
    assert_eq!(app.login(&email, &long).await.status(), 200);
    assert_problem(
        app.login(&email, &long.to_uppercase()).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_problem(
        app.login(&email, long.trim_end()).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_json_and_wrong_content_type_are_problems() {
    let app = spawn_app().await;
    let url = app.url("/v1/auth/signup");

    let malformed = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_problem(malformed, 400, "VALIDATION_FAILED").await;

    let form = app
        .client
        .post(&url)
        .header("content-type", "text/plain")
        .body("email=a")
        .send()
        .await
        .unwrap();
    assert_problem(form, 415, "UNSUPPORTED_MEDIA_TYPE").await;
    assert_eq!(app.count("users").await, 0);
}
