//! Services call the TODO service with their own credentials, through standard OAuth 2.

use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use serde_json::json;
use shared::testing::json;

use crate::helpers::{Stack, User, spawn_stack};

/// A client created through the admin API: (client_id, client_secret).
async fn client(stack: &Stack, scopes: &[&str]) -> (String, String) {
    let admin = stack.admin().await;
    let resp = stack
        .auth_post(
            &admin,
            "/v1/admin/clients",
            Some(json!({"name": "reporting", "scopes": scopes})),
        )
        .await;
    let (status, body) = json(resp).await;
    assert_eq!(status, 201, "{body}");
    (
        body["client_id"].as_str().unwrap().to_owned(),
        body["client_secret"].as_str().unwrap().to_owned(),
    )
}

/// A client-credentials token fetched with the `oauth2` crate, as any Rust service would.
async fn fetch_token(stack: &Stack, id: &str, secret: &str, scope: Option<&str>) -> String {
    let oauth = BasicClient::new(ClientId::new(id.to_owned()))
        .set_client_secret(ClientSecret::new(secret.to_owned()))
        .set_token_uri(TokenUrl::new(format!("{}/oauth/token", stack.auth)).unwrap());
    let http = oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = oauth.exchange_client_credentials();
    if let Some(scope) = scope {
        request = request.add_scope(Scope::new(scope.to_owned()));
    }
    let token = request
        .request_async(&http)
        .await
        .expect("the oauth2 crate gets a token");
    assert!(token.refresh_token().is_none());
    assert!(token.expires_in().is_some());
    token.access_token().secret().clone()
}

fn as_user(access: String) -> User {
    User {
        id: String::new(),
        email: String::new(),
        access,
        refresh: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_with_todos_admin_uses_the_admin_routes() {
    let stack = spawn_stack().await;
    let alice = stack.user().await;
    let todo = stack.create(&alice, json!({"title": "alice's"})).await;
    let (id, secret) = client(&stack, &["todos:admin"]).await;

    let service = as_user(fetch_token(&stack, &id, &secret, None).await);

    let (status, page) = json(
        stack
            .get(&service, &format!("/v1/admin/todos?owner_id={}", alice.id))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["items"][0]["id"], todo["id"]);
    let path = format!("/v1/admin/todos/{}", todo["id"].as_str().unwrap());
    assert_eq!(
        stack.delete(&service, &path).send().await.unwrap().status(),
        204
    );
    // Its scopes are exactly its client's: no todos:read of its own.
    stack.assert_forbidden(&service, "/v1/todos").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_service_without_todos_admin_is_refused() {
    let stack = spawn_stack().await;
    let (id, secret) = client(&stack, &["todos:read", "todos:admin"]).await;

    let narrow = as_user(fetch_token(&stack, &id, &secret, Some("todos:read")).await);

    stack.assert_forbidden(&narrow, "/v1/admin/todos").await;
    assert_eq!(stack.status(&narrow, "/v1/todos").await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_service_token_is_refused_within_a_second() {
    let stack = spawn_stack().await;
    let (id, secret) = client(&stack, &["todos:read"]).await;
    let service = as_user(fetch_token(&stack, &id, &secret, None).await);
    assert_eq!(stack.status(&service, "/v1/todos").await, 200);

    let resp = stack
        .client
        .post(format!("{}/oauth/revoke", stack.auth))
        .basic_auth(&id, Some(&secret))
        .form(&[("token", service.access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let took = stack
        .time_until_revoked(&service, std::time::Instant::now())
        .await;
    assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
}
