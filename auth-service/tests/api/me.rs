use serde_json::json;

use crate::helpers::{assert_problem, json, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn me_returns_the_callers_user() {
    let app = spawn_app().await;
    let (email, pair) = app.user_session().await;

    let (status, me) = json(
        app.get("/v1/users/me", pair["access_token"].as_str().unwrap())
            .await,
    )
    .await;

    assert_eq!(status, 200);
    assert_eq!(me["email"], email.as_str());
    assert!(me.get("password_hash").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn patch_me_changes_only_the_display_name() {
    let app = spawn_app().await;
    let (email, pair) = app.user_session().await;
    let at = pair["access_token"].as_str().unwrap();
    let patch = |body: serde_json::Value| {
        app.client
            .patch(app.url("/v1/users/me"))
            .bearer_auth(at)
            .json(&body)
            .send()
    };

    let (status, me) = json(patch(json!({"display_name": "  Zoë  "})).await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(me["display_name"], "Zoë");

    let (_, me) = json(patch(json!({})).await.unwrap()).await;
    assert_eq!(me["display_name"], "Zoë", "absent leaves it");

    let (_, me) = json(patch(json!({"display_name": null})).await.unwrap()).await;
    assert_eq!(
        me["display_name"],
        serde_json::Value::Null,
        "null clears it"
    );

    // Mass assignment is impossible: other fields are refused outright.
    for body in [
        json!({"role": "admin"}),
        json!({"email": "x@example.com"}),
        json!({"display_name": "ok", "disabled": true}),
    ] {
        let problem =
            assert_problem(patch(body.clone()).await.unwrap(), 422, "VALIDATION_FAILED").await;
        assert_eq!(
            problem["errors"][0]["code"], "UNKNOWN_FIELD",
            "{body} -> {problem}"
        );
    }
    assert_problem(
        patch(json!({"display_name": ""})).await.unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "users WHERE email = '{email}' AND role = 'user' AND display_name IS NULL"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_bad_tokens_get_one_identical_401() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let at = pair["access_token"].as_str().unwrap();
    let mut parts: Vec<String> = at.split('.').map(str::to_owned).collect();
    parts[2] = parts[2].chars().rev().collect();
    let tampered = parts.join(".");
    let unsigned = format!(
        "{}.{}.",
        "eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0", parts[1]
    );

    let mut bodies = Vec::new();
    let no_token = app
        .client
        .get(app.url("/v1/users/me"))
        .send()
        .await
        .unwrap();
    bodies.push(assert_problem(no_token, 401, "TOKEN_INVALID").await);
    for token in ["garbage", "a.b.c", tampered.as_str(), unsigned.as_str()] {
        bodies
            .push(assert_problem(app.get("/v1/users/me", token).await, 401, "TOKEN_INVALID").await);
    }
    for body in &mut bodies {
        body.as_object_mut().unwrap().remove("request_id");
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_but_well_signed_token_is_token_expired() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let c = crate::helpers::claims(pair["access_token"].as_str().unwrap());
    let signer = app.state.keys.signer().unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = shared::tokens::AccessClaims {
        iss: c["iss"].as_str().unwrap().into(),
        aud: shared::tokens::Audience::One("auth-service".into()),
        sub: c["sub"].as_str().unwrap().into(),
        exp: now - 3600,
        iat: now - 4500,
        nbf: None,
        jti: "j".into(),
        sid: c["sid"].as_str().map(Into::into),
        role: "user".into(),
        scope: "todos:read".into(),
        client_id: None,
        email_verified: None,
        amr: None,
    };
    let mut header = jsonwebtoken::Header::new(signer.alg.jwt());
    header.typ = Some("at+jwt".into());
    header.kid = Some(signer.kid.clone());
    let expired = jsonwebtoken::encode(&header, &claims, &signer.key).unwrap();

    assert_problem(
        app.get("/v1/users/me", &expired).await,
        401,
        "TOKEN_EXPIRED",
    )
    .await;
    // Logout, which also takes a refresh token, says the same of an expired bearer.
    assert_problem(
        app.post_bearer("/v1/auth/logout", &expired, None).await,
        401,
        "TOKEN_EXPIRED",
    )
    .await;
}
