//! Deleting users, and reading the audit log.

use crate::admin::{admin_session, at, delete_user, user_id};
use crate::helpers::{PASSWORD, assert_problem, json, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_revokes_everything_and_publishes_an_event() {
    let app = spawn_app().await;
    let (_, admin) = admin_session(&app).await;
    let (email, target) = app.user_session().await;
    let id = user_id(&app, &target).await;

    assert_eq!(delete_user(&app, at(&admin), &id).await.status(), 204);

    assert_problem(
        app.get(&format!("/v1/admin/users/{id}"), at(&admin)).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        app.get("/v1/users/me", at(&target)).await,
        401,
        "TOKEN_REVOKED",
    )
    .await;
    assert_problem(
        app.login(&email, PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "audit_log WHERE event = 'user_deleted' AND subject_id = '{id}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("outbox_events WHERE kind = 'user_deleted' AND published_at IS NOT NULL")
            .await,
        1
    );
    let mut redis = app.redis().await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{}events", app.redis_prefix))
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]
            .1
            .contains(&("kind".into(), "user_deleted".into()))
    );
    assert_problem(delete_user(&app, at(&admin), &id).await, 404, "NOT_FOUND").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_log_lists_newest_first_with_filters() {
    let app = spawn_app().await;
    let (_, admin) = admin_session(&app).await;
    let (email, target) = app.user_session().await;
    let id = user_id(&app, &target).await;
    app.login(&email, "not the password").await;

    let (status, page) = json(
        app.get(&format!("/v1/admin/audit?user_id={id}"), at(&admin))
            .await,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    let events: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["login_failed", "login_succeeded", "signup"],
        "newest first"
    );
    let item = &page["items"][0];
    for field in ["occurred_at", "ip", "request_id"] {
        assert!(item[field].is_string(), "{field}: {item}");
    }
    assert_eq!(item["details"]["reason"], "wrong_password");

    let (_, failed) = json(
        app.get("/v1/admin/audit?event=login_failed", at(&admin))
            .await,
    )
    .await;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    let (_, one) = json(app.get("/v1/admin/audit?limit=1", at(&admin)).await).await;
    let cursor = one["next_cursor"].as_str().unwrap();
    let (_, next) = json(
        app.get(
            &format!("/v1/admin/audit?limit=1&cursor={cursor}"),
            at(&admin),
        )
        .await,
    )
    .await;
    assert!(next["items"][0]["id"].as_i64() < one["items"][0]["id"].as_i64());
}
