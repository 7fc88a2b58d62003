//! Introspection (RFC 7662) and revocation (RFC 7009) by service clients, and what a
//! deleted client's tokens are worth.

use serde_json::json;

use crate::admin::admin_session;
use crate::helpers::{TestApp, assert_problem, claims, json, spawn_app};
use crate::oauth::{basic, client_credentials, form, new_client, oauth_error};

#[tokio::test(flavor = "multi_thread")]
async fn introspection_and_revocation() {
    let app = spawn_app().await;
    let (id, secret) = new_client(&app, &["todos:read", "tokens:introspect"]).await;
    let auth = basic(&id, &secret);
    let (_, token) = json(client_credentials(&app, Some(&auth)).await).await;
    let at = token["access_token"].as_str().unwrap();
    let (_, pair) = app.user_session().await;

    let (status, info) =
        json(form(&app, "/oauth/introspect", Some(&auth), &[("token", at)]).await).await;
    assert_eq!(status, 200);
    assert_eq!(info["active"], true);
    assert_eq!(info["client_id"], id.as_str());
    assert_eq!(info["scope"], "todos:read tokens:introspect");
    assert!(info["exp"].is_i64() && info["jti"].is_string());
    let (_, refresh_info) = json(
        form(
            &app,
            "/oauth/introspect",
            Some(&auth),
            &[("token", pair["refresh_token"].as_str().unwrap())],
        )
        .await,
    )
    .await;
    assert_eq!(refresh_info["active"], true);
    assert_eq!(refresh_info["token_type"], "refresh_token");
    for junk in ["garbage", "a.b.c"] {
        let (_, off) =
            json(form(&app, "/oauth/introspect", Some(&auth), &[("token", junk)]).await).await;
        assert_eq!(off, json!({"active": false}));
    }
    oauth_error(
        form(&app, "/oauth/introspect", None, &[("token", at)]).await,
        401,
        "invalid_client",
    )
    .await;

    let revoked = form(
        &app,
        "/oauth/revoke",
        Some(&auth),
        &[("token", at), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let (_, off) = json(form(&app, "/oauth/introspect", Some(&auth), &[("token", at)]).await).await;
    assert_eq!(off, json!({"active": false}));
    let jti = claims(at)["jti"].as_str().unwrap().to_owned();
    assert!(
        app.denylisted(&format!("jti:{jti}")).await,
        "the TODO service hears of it"
    );

    let rt = pair["refresh_token"].as_str().unwrap();
    assert_eq!(
        form(&app, "/oauth/revoke", Some(&auth), &[("token", rt)])
            .await
            .status(),
        200
    );
    let (_, off) = json(form(&app, "/oauth/introspect", Some(&auth), &[("token", rt)]).await).await;
    assert_eq!(off["active"], false);
    assert_eq!(
        form(&app, "/oauth/revoke", Some(&auth), &[("token", "unknown")])
            .await
            .status(),
        200
    );
    oauth_error(
        form(
            &app,
            "/oauth/revoke",
            Some(&basic(&id, "wrong")),
            &[("token", rt)],
        )
        .await,
        401,
        "invalid_client",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_clients_tokens_stop_working() {
    let app = spawn_app().await;
    let (id, secret) = new_client(&app, &["todos:read"]).await;
    let auth = basic(&id, &secret);
    let (_, token) = json(client_credentials(&app, Some(&auth)).await).await;
    let (_, admin) = admin_session(&app).await;

    let resp = app
        .client
        .delete(app.url(&format!("/v1/admin/clients/{id}")))
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    oauth_error(
        client_credentials(&app, Some(&auth)).await,
        401,
        "invalid_client",
    )
    .await;
    let other = new_client(&app, &["tokens:introspect"]).await;
    let (_, off) = json(
        form(
            &app,
            "/oauth/introspect",
            Some(&basic(&other.0, &other.1)),
            &[("token", token["access_token"].as_str().unwrap())],
        )
        .await,
    )
    .await;
    assert_eq!(off["active"], false);
    assert_eq!(
        app.count(&format!(
            "revocations WHERE kind = 'user' AND value = '{id}' AND published_at IS NOT NULL"
        ))
        .await,
        1
    );
}

/// A client token for `scopes`: (basic auth header, access token).
async fn client_token(app: &TestApp, scopes: &[&str]) -> (String, String) {
    let (id, secret) = new_client(app, scopes).await;
    let auth = basic(&id, &secret);
    let (status, token) = json(client_credentials(app, Some(&auth)).await).await;
    assert_eq!(status, 200, "{token}");
    (auth, token["access_token"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_acts_only_on_its_own_tokens_without_tokens_introspect() {
    let app = spawn_app().await;
    let (nosy, _) = client_token(&app, &["todos:read"]).await;
    let (_, victim_token) = client_token(&app, &["todos:read"]).await;
    let (_, pair) = app.user_session().await;
    let user_at = pair["access_token"].as_str().unwrap();
    let user_rt = pair["refresh_token"].as_str().unwrap();

    // Introspection of anyone else's token says no more than for garbage.
    for token in [user_at, user_rt, victim_token.as_str()] {
        let (status, info) =
            json(form(&app, "/oauth/introspect", Some(&nosy), &[("token", token)]).await).await;
        assert_eq!(status, 200);
        assert_eq!(info, json!({"active": false}));
    }
    // Revocation of anyone else's token answers like an unknown token and revokes nothing.
    let audit_before = app.count("audit_log").await;
    for token in [user_at, user_rt, victim_token.as_str()] {
        let resp = form(&app, "/oauth/revoke", Some(&nosy), &[("token", token)]).await;
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(app.count("revocations").await, 0);
    assert_eq!(app.count("sessions WHERE revoked_at IS NOT NULL").await, 0);
    assert_eq!(app.count("audit_log").await, audit_before);
    assert_eq!(app.get("/v1/users/me", user_at).await.status(), 200);
    let (status, _) = json(app.refresh(user_rt).await).await;
    assert_eq!(status, 200, "the refresh token was not spent or revoked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_token_revoked_by_jti_stops_working_at_the_auth_service_at_once() {
    let app = spawn_app().await;
    let (admin_client, _) = client_token(&app, &["tokens:introspect"]).await;
    let (_, admin) = admin_session(&app).await;
    let at = admin["access_token"].as_str().unwrap();
    assert_eq!(app.get("/v1/users/me", at).await.status(), 200);
    assert_eq!(app.get("/v1/admin/users", at).await.status(), 200);

    let resp = form(&app, "/oauth/revoke", Some(&admin_client), &[("token", at)]).await;
    assert_eq!(resp.status(), 200);

    assert_problem(app.get("/v1/users/me", at).await, 401, "TOKEN_REVOKED").await;
    assert_problem(app.get("/v1/admin/users", at).await, 401, "TOKEN_REVOKED").await;
    assert_problem(
        app.post_bearer("/v1/auth/logout", at, None).await,
        401,
        "TOKEN_REVOKED",
    )
    .await;
    // Only that token: the session goes on with a fresh one.
    let (status, next) = json(app.refresh(admin["refresh_token"].as_str().unwrap()).await).await;
    assert_eq!(status, 200, "{next}");
    let fresh = next["access_token"].as_str().unwrap();
    assert_eq!(app.get("/v1/users/me", fresh).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_past_exp_that_a_lenient_verifier_still_accepts_can_be_revoked() {
    let app = spawn_app().await;
    let (admin_client, _) = client_token(&app, &["tokens:introspect"]).await;
    let (_, pair) = app.user_session().await;
    // The same claims, but expired two minutes ago: within the largest leeway a verifier
    // may allow, so some verifier may still accept it.
    let mut claims: shared::tokens::AccessClaims =
        serde_json::from_value(claims(pair["access_token"].as_str().unwrap())).unwrap();
    let now = chrono::Utc::now().timestamp();
    claims.iat = now - 400;
    claims.nbf = Some(now - 400);
    claims.exp = now - 120;
    claims.jti = uuid::Uuid::now_v7().to_string();
    let signer = app.state.keys.signer().unwrap();
    let mut header = jsonwebtoken::Header::new(signer.alg.jwt());
    header.typ = Some("at+jwt".into());
    header.kid = Some(signer.kid.clone());
    let expired = jsonwebtoken::encode(&header, &claims, &signer.key).unwrap();

    let resp = form(
        &app,
        "/oauth/revoke",
        Some(&admin_client),
        &[("token", &expired)],
    )
    .await;

    assert_eq!(resp.status(), 200);
    assert!(
        app.denylisted(&format!("jti:{}", claims.jti)).await,
        "its revocation reaches the denylist"
    );
}
