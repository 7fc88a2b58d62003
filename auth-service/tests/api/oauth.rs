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

/// `POST /oauth/token` with the client-credentials grant, authenticated by `auth` (a Basic
/// header) if given.
pub async fn client_credentials(app: &TestApp, auth: Option<&str>) -> reqwest::Response {
    form(
        app,
        "/oauth/token",
        auth,
        &[("grant_type", "client_credentials")],
    )
    .await
}

pub async fn oauth_error(resp: reqwest::Response, status: u16, error: &str) -> Value {
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
        let resp = client_credentials(&app, Some(auth)).await;
        assert!(
            resp.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        oauth_error(resp, 401, "invalid_client").await;
    }
    oauth_error(client_credentials(&app, None).await, 401, "invalid_client").await;
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
