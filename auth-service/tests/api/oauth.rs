//! Service clients and the OAuth 2 endpoints (RFC 6749, 7009, 7662, 8414).

use base64::Engine;
use serde_json::{Value, json};

use crate::admin::admin_session;
use crate::helpers::{TestApp, assert_problem, claims, json, spawn_app};

/// A client created by an admin: (client_id, client_secret).
pub async fn new_client(app: &TestApp, scopes: &[&str]) -> (String, String) {
    let (_, admin) = admin_session(app).await;
    let resp = app
        .post_bearer(
            "/v1/admin/clients",
            admin["access_token"].as_str().unwrap(),
            Some(json!({"name": "billing", "scopes": scopes})),
        )
        .await;
    let (status, body) = json(resp).await;
    assert_eq!(status, 201, "{body}");
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"].as_str().unwrap().to_owned(),
    )
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

pub async fn form(
    app: &TestApp,
    path: &str,
    auth: Option<&str>,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).form(params);
    if let Some(auth) = auth {
        req = req.header("authorization", auth);
    }
    req.send().await.unwrap()
}

async fn oauth_error(resp: reqwest::Response, status: u16, error: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let (_, body) = json(resp).await;
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string());
    body
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_are_created_with_a_secret_shown_once_and_stored_hashed() {
    let app = spawn_app().await;
    let (id, secret) = new_client(&app, &["todos:admin", "todos:read"]).await;
    assert!(secret.len() >= 43);
    assert_eq!(
        app.count(&format!(
            "oauth_clients WHERE position(convert_to('{secret}', 'UTF8') in secret_hash) > 0"
        ))
        .await,
        0
    );

    let (_, admin) = admin_session(&app).await;
    let (_, page) = json(
        app.get("/v1/admin/clients", admin["access_token"].as_str().unwrap())
            .await,
    )
    .await;
    let listed = &page["items"][0];
    assert_eq!(listed["client_id"], id.as_str());
    assert_eq!(listed["scopes"], json!(["todos:admin", "todos:read"]));
    assert!(listed.get("client_secret").is_none() && !page.to_string().contains(&secret));
    let (status, one) = json(
        app.get(
            &format!("/v1/admin/clients/{id}"),
            admin["access_token"].as_str().unwrap(),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&one, listed);
    assert_problem(
        app.get(
            &format!("/v1/admin/clients/{}", uuid::Uuid::now_v7()),
            admin["access_token"].as_str().unwrap(),
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(
        app.count("audit_log WHERE event = 'client_created'").await,
        1
    );

    let resp = app
        .post_bearer(
            "/v1/admin/clients",
            admin["access_token"].as_str().unwrap(),
            Some(json!({"name": "x", "scopes": ["root"]})),
        )
        .await;
    assert_problem(resp, 422, "VALIDATION_FAILED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_by_basic_or_form_give_a_service_token() {
    let app = spawn_app().await;
    let (id, secret) = new_client(&app, &["todos:admin", "todos:read"]).await;

    for resp in [
        form(
            &app,
            "/oauth/token",
            Some(&basic(&id, &secret)),
            &[("grant_type", "client_credentials")],
        )
        .await,
        form(
            &app,
            "/oauth/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
        )
        .await,
    ] {
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let (status, token) = json(resp).await;
        assert_eq!(status, 200, "{token}");
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], 900);
        assert!(token.get("refresh_token").is_none());
        let c = claims(token["access_token"].as_str().unwrap());
        assert_eq!(c["role"], "service");
        assert_eq!(c["sub"], id.as_str());
        assert_eq!(c["client_id"], id.as_str());
        assert!(c.get("sid").is_none());
        assert_eq!(c["scope"], "todos:read todos:admin");
        assert_eq!(token["scope"], c["scope"]);
    }
    let resp = form(
        &app,
        "/oauth/token",
        Some(&basic(&id, &secret)),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "todos:read"),
        ],
    )
    .await;
    let (_, narrowed) = json(resp).await;
    assert_eq!(
        claims(narrowed["access_token"].as_str().unwrap())["scope"],
        "todos:read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_errors_follow_rfc_6749() {
    let app = spawn_app().await;
    let (id, secret) = new_client(&app, &["todos:read"]).await;
    let good = basic(&id, &secret);
    let wrong = basic(&id, "not-the-secret");
    let unknown = basic(&uuid::Uuid::now_v7().to_string(), &secret);

    oauth_error(
        form(&app, "/oauth/token", Some(&good), &[]).await,
        400,
        "invalid_request",
    )
    .await;
    for grant in ["password", "authorization_code", "implicit"] {
        oauth_error(
            form(&app, "/oauth/token", Some(&good), &[("grant_type", grant)]).await,
            400,
            "unsupported_grant_type",
        )
        .await;
    }
    for auth in [&wrong, &unknown, &"Basic !!!".to_owned()] {
        let resp = form(
            &app,
            "/oauth/token",
            Some(auth),
            &[("grant_type", "client_credentials")],
        )
        .await;
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        oauth_error(resp, 401, "invalid_client").await;
    }
    oauth_error(
        form(
            &app,
            "/oauth/token",
            None,
            &[("grant_type", "client_credentials")],
        )
        .await,
        401,
        "invalid_client",
    )
    .await;
    let both = form(
        &app,
        "/oauth/token",
        Some(&good),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    oauth_error(both, 400, "invalid_request").await;
    for scope in ["todos:admin", "todos:read nonsense"] {
        let resp = form(
            &app,
            "/oauth/token",
            Some(&good),
            &[("grant_type", "client_credentials"), ("scope", scope)],
        )
        .await;
        oauth_error(resp, 400, "invalid_scope").await;
    }
    oauth_error(
        form(
            &app,
            "/oauth/token",
            None,
            &[("grant_type", "refresh_token"), ("refresh_token", "nope")],
        )
        .await,
        400,
        "invalid_grant",
    )
    .await;
    let as_json = app
        .client
        .post(app.url("/oauth/token"))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    oauth_error(as_json, 400, "invalid_request").await;
    // Failures cost the caller no hash: the first per address (and client) in a minute is
    // audited, the rest counted in a metric.
    assert_eq!(
        app.count("audit_log WHERE event = 'client_auth_failed'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_refresh_token_grant_rotates_like_the_refresh_route() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let rt = pair["refresh_token"].as_str().unwrap();

    let (status, token) = json(
        form(
            &app,
            "/oauth/token",
            None,
            &[("grant_type", "refresh_token"), ("refresh_token", rt)],
        )
        .await,
    )
    .await;

    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], "todos:read todos:write");
    let rotated = token["refresh_token"].as_str().unwrap();
    // Client credentials are optional here, but wrong ones are refused and spend nothing.
    let wrong = basic("no-such-client", "wrong secret");
    let refused = form(
        &app,
        "/oauth/token",
        Some(&wrong),
        &[("grant_type", "refresh_token"), ("refresh_token", rotated)],
    )
    .await;
    oauth_error(refused, 401, "invalid_client").await;
    let (status, again) = json(
        form(
            &app,
            "/oauth/token",
            None,
            &[("grant_type", "refresh_token"), ("refresh_token", rotated)],
        )
        .await,
    )
    .await;
    assert_eq!(
        status, 200,
        "the refused attempt left the token unspent: {again}"
    );
    assert_ne!(token["refresh_token"].as_str().unwrap(), rt);
    let reuse = form(
        &app,
        "/oauth/token",
        None,
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await;
    oauth_error(reuse, 400, "invalid_grant").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_and_revocation() {
    let app = spawn_app().await;
    let (id, secret) = new_client(&app, &["todos:read", "tokens:introspect"]).await;
    let auth = basic(&id, &secret);
    let (_, token) = json(
        form(
            &app,
            "/oauth/token",
            Some(&auth),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
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
    let (_, token) = json(
        form(
            &app,
            "/oauth/token",
            Some(&auth),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
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
        form(
            &app,
            "/oauth/token",
            Some(&auth),
            &[("grant_type", "client_credentials")],
        )
        .await,
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

#[tokio::test(flavor = "multi_thread")]
async fn authorization_server_metadata_lists_the_endpoints() {
    let app = spawn_app().await;
    let (status, meta) = json(
        app.client
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(meta["issuer"], "http://127.0.0.1:8080");
    assert_eq!(meta["token_endpoint"], "http://127.0.0.1:8080/oauth/token");
    assert_eq!(
        meta["revocation_endpoint"],
        "http://127.0.0.1:8080/oauth/revoke"
    );
    assert_eq!(
        meta["introspection_endpoint"],
        "http://127.0.0.1:8080/oauth/introspect"
    );
    assert_eq!(
        meta["jwks_uri"],
        "http://127.0.0.1:8080/.well-known/jwks.json"
    );
    assert_eq!(
        meta["grant_types_supported"],
        json!(["client_credentials", "refresh_token"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "client_secret_post"])
    );
}

/// A client token for `scopes`: (basic auth header, access token).
async fn client_token(app: &TestApp, scopes: &[&str]) -> (String, String) {
    let (id, secret) = new_client(app, scopes).await;
    let auth = basic(&id, &secret);
    let (status, token) = json(
        form(
            app,
            "/oauth/token",
            Some(&auth),
            &[("grant_type", "client_credentials")],
        )
        .await,
    )
    .await;
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
