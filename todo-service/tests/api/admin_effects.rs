//! What admins do at the auth service takes effect at the TODO service.

use std::time::{Duration, Instant};

use serde_json::json;
use shared::testing::json;

use crate::helpers::{Stack, User, spawn_stack, spawn_todo};

async fn patch_user(stack: &Stack, admin: &User, id: &str, body: serde_json::Value) {
    let resp = stack
        .client
        .patch(format!("{}/v1/admin/users/{id}", stack.auth))
        .bearer_auth(&admin.access)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_demoted_admin_loses_admin_rights_within_a_second() {
    let stack = spawn_stack().await;
    let boss = stack.admin().await;
    let demoted = stack.admin().await;
    assert_eq!(stack.status(&demoted, "/v1/admin/todos").await, 200);

    patch_user(&stack, &boss, &demoted.id, json!({"role": "user"})).await;
    let took = stack
        .time_until_revoked_at(&demoted, "/v1/admin/todos", Instant::now())
        .await;

    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_is_refused_within_a_second() {
    let stack = spawn_stack().await;
    let admin = stack.admin().await;
    let user = stack.user().await;

    patch_user(&stack, &admin, &user.id, json!({"disabled": true})).await;
    let took = stack.time_until_revoked(&user, Instant::now()).await;

    assert!(took < Duration::from_secs(1), "took {took:?}");
}

async fn delete_user(stack: &Stack, admin: &User, id: &str) {
    let resp = stack
        .client
        .delete(format!("{}/v1/admin/users/{id}", stack.auth))
        .bearer_auth(&admin.access)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}

async fn todo_count(stack: &Stack, admin: &User, owner: &str) -> usize {
    let (_, page) = json(
        stack
            .get(admin, &format!("/v1/admin/todos?owner_id={owner}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    page["items"].as_array().unwrap().len()
}

async fn wait_until_gone(stack: &Stack, admin: &User, owner: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while todo_count(stack, admin, owner).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the deleted user's todos are still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_users_todos_are_removed() {
    let stack = spawn_stack().await;
    let admin = stack.admin().await;
    let doomed = stack.user().await;
    let keeper = stack.user().await;
    for i in 0..3 {
        stack
            .create(&doomed, json!({"title": format!("t{i}")}))
            .await;
    }
    stack.create(&keeper, json!({"title": "stays"})).await;

    delete_user(&stack, &admin, &doomed.id).await;

    wait_until_gone(&stack, &admin, &doomed.id).await;
    assert_eq!(todo_count(&stack, &admin, &keeper.id).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deletion_while_the_todo_service_is_down_is_applied_when_it_starts() {
    let mut stack = spawn_stack().await;
    let admin = stack.admin().await;
    let doomed = stack.user().await;
    stack.create(&doomed, json!({"title": "left behind"})).await;
    let settings = todo_service::config::Settings {
        http: shared::config::HttpSettings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
        todo: stack.todo_state.settings.todo.clone(),
    };
    stack.stop_todo();
    tokio::time::sleep(Duration::from_millis(300)).await;

    delete_user(&stack, &admin, &doomed.id).await;
    let (base, _state, _stop) = spawn_todo(settings).await;
    stack.todo = base;
    stack.wait_ready(&stack.todo.clone()).await;

    wait_until_gone(&stack, &admin, &doomed.id).await;
}
