//! The OpenAPI document is the contract: a snapshot makes any drift a visible diff.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p auth-service openapi`.

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_snapshot() {
    let app = spawn_app().await;
    shared::testing::assert_openapi_contract(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
        &[
            "/v1/auth/signup",
            "/v1/auth/login",
            "/v1/auth/refresh",
            "/v1/auth/logout",
            "/v1/auth/logout-all",
            "/v1/auth/sessions",
            "/v1/auth/sessions/{id}",
            "/v1/users/me",
            "/v1/users/me/password",
            "/.well-known/jwks.json",
            "/healthz",
            "/readyz",
            "/metrics",
        ],
        concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
        "auth-service",
    )
    .await;
    let docs = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
}
