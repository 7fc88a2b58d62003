//! The OpenAPI document is the contract: a snapshot makes any drift a visible diff.
//! Regenerate with `UPDATE_OPENAPI=1 cargo test -p todo-service openapi`.

use shared::testing::json;

use crate::helpers::spawn_stack;

#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_matches_the_snapshot() {
    let stack = spawn_stack().await;
    let (status, spec) = json(
        stack
            .client
            .get(stack.todo_url("/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let paths = spec["paths"].as_object().unwrap();
    for path in [
        "/v1/todos",
        "/v1/todos/{id}",
        "/v1/admin/todos",
        "/v1/admin/todos/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["BearerAuth"]["scheme"],
        "bearer"
    );

    let rendered = serde_json::to_string_pretty(&spec).unwrap() + "\n";
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(file, &rendered).unwrap();
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        committed == rendered,
        "the OpenAPI document changed; review and run UPDATE_OPENAPI=1 cargo test -p todo-service openapi"
    );
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
