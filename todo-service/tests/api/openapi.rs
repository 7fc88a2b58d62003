//! The OpenAPI document is the contract: a snapshot makes any drift a visible diff.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p todo-service openapi`.

use crate::helpers::spawn_stack;

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_snapshot() {
    let stack = spawn_stack().await;
    shared::testing::assert_openapi_contract(
        stack
            .client
            .get(stack.todo_url("/openapi.json"))
            .send()
            .await
            .unwrap(),
        &[
            "/v1/todos",
            "/v1/todos/{id}",
            "/v1/admin/todos",
            "/v1/admin/todos/{id}",
            "/healthz",
            "/readyz",
            "/metrics",
        ],
        concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json"),
        "todo-service",
    )
    .await;
    assert_eq!(
        stack
            .client
            .get(stack.todo_url("/docs"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}
