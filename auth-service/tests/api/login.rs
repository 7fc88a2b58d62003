use serde_json::json;

use crate::helpers::{PASSWORD, assert_problem, claims, header, json, spawn_app, unique_email};

#[tokio::test(flavor = "multi_thread")]
async fn login_returns_a_token_pair_with_the_contract_claims() {
    let app = spawn_app().await;
    let email = app.new_user().await;

    let pair = app.login_ok(&email.to_uppercase()).await;

    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 900);
    assert!(pair["refresh_token"].as_str().unwrap().len() >= 43);
    assert!(pair["refresh_expires_in"].as_i64().unwrap() > 0);
    let at = pair["access_token"].as_str().unwrap();
    let h = header(at);
    assert_eq!(h["alg"], "EdDSA");
    assert_eq!(h["typ"], "at+jwt");
    let c = claims(at);
    assert_eq!(c["iss"], "http://127.0.0.1:8080");
    assert!(
        c["aud"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "todo-service")
    );
    assert_eq!(c["sid"], pair["session_id"]);
    assert_eq!(c["role"], "user");
    assert_eq!(c["scope"], "todos:read todos:write");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    assert!(c["jti"].is_string());
    let (_, me) = json(app.get("/v1/users/me", at).await).await;
    assert_eq!(c["sub"], me["id"]);
    // The kid names a published key.
    let jwks = app.jwks().await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == h["kid"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_email_and_wrong_password_get_the_same_401() {
    let app = spawn_app().await;
    let email = app.new_user().await;

    let unknown = app.login(&unique_email(), PASSWORD).await;
    let wrong = app.login(&email, "not the password at all").await;
    let malformed = app.login("no-at-sign", PASSWORD).await;

    let mut bodies = Vec::new();
    for resp in [unknown, wrong, malformed] {
        let mut body = assert_problem(resp, 401, "INVALID_CREDENTIALS").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push(body);
    }
    assert_eq!(bodies[0], bodies[1]);
    assert_eq!(bodies[1], bodies[2]);
    assert_eq!(app.count("audit_log WHERE event = 'login_failed'").await, 3);
    assert_eq!(app.count("sessions").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_account_gets_the_same_401() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.exec("UPDATE users SET disabled = true").await;

    let resp = app.login(&email, PASSWORD).await;

    let body = assert_problem(resp, 401, "INVALID_CREDENTIALS").await;
    assert_eq!(body["detail"], "The email or password is wrong.");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_with_missing_fields_is_a_validation_error() {
    let app = spawn_app().await;
    let resp = app
        .post_json(
            "/v1/auth/login",
            &json!({"email": unique_email(), "password": ""}),
        )
        .await;
    assert_problem(resp, 422, "VALIDATION_FAILED").await;
    let resp = app
        .post_json("/v1/auth/login", &json!({"email": unique_email()}))
        .await;
    let problem = assert_problem(resp, 422, "VALIDATION_FAILED").await;
    assert_eq!(problem["errors"][0]["field"], "password");
    assert_eq!(problem["errors"][0]["code"], "REQUIRED");
    let resp = app
        .post_json(
            "/v1/auth/login",
            &json!({"email": unique_email(), "password": "x", "refresh_delivery": "pigeon"}),
        )
        .await;
    let problem = assert_problem(resp, 422, "VALIDATION_FAILED").await;
    assert_eq!(problem["errors"][0]["field"], "refresh_delivery");
    assert_eq!(problem["errors"][0]["code"], "INVALID_VALUE");
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_delivery_sets_a_locked_down_cookie_and_no_body_token() {
    let app = spawn_app().await;
    let email = app.new_user().await;

    let resp = app.login_with_cookie(&email).await;

    assert_eq!(resp.status(), 200);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (_, body) = json(resp).await;
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert!(cookie.starts_with("refresh_token="), "{cookie}");
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/v1/auth"] {
        assert!(
            cookie.split("; ").any(|a| a == attr),
            "{attr} missing in {cookie}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rehash_happens_on_login_when_parameters_change() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    // A hash made with weaker (older) parameters than the configured ones.
    let old = {
        use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
        let params = argon2::Params::new(8192, 3, 1, None).unwrap();
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string()
    };
    app.exec(&format!("UPDATE users SET password_hash = '{old}'"))
        .await;

    app.login_ok(&email).await;

    assert_eq!(
        app.count("users WHERE password_hash LIKE '$argon2id$v=19$m=19456,t=2,p=1$%'")
            .await,
        1
    );
    app.login_ok(&email).await;
}
