use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_problem, json, spawn_app};

/// A logged-in admin (promoted in the database, as `create-admin` would).
pub async fn admin_session(app: &TestApp) -> (String, Value) {
    let email = app.new_user().await;
    app.exec(&format!(
        "UPDATE users SET role = 'admin' WHERE email = '{email}'"
    ))
    .await;
    let pair = app.login_ok(&email).await;
    (email, pair)
}

pub fn at(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

pub async fn user_id(app: &TestApp, pair: &Value) -> String {
    let (_, me) = json(app.get("/v1/users/me", at(pair)).await).await;
    me["id"].as_str().unwrap().to_owned()
}

pub async fn patch_user(app: &TestApp, token: &str, id: &str, body: Value) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/v1/admin/users/{id}")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

pub async fn delete_user(app: &TestApp, token: &str, id: &str) -> reqwest::Response {
    app.client
        .delete(app.url(&format!("/v1/admin/users/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_admin_route_refuses_a_user_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, user) = app.user_session().await;
    let (_, victim) = app.user_session().await;
    let victim_id = user_id(&app, &victim).await;
    let token = at(&user);
    let audit_before = app.count("audit_log").await;

    let attempts = vec![
        app.get("/v1/admin/users", token).await,
        app.get(&format!("/v1/admin/users/{victim_id}"), token)
            .await,
        patch_user(&app, token, &victim_id, json!({"role": "admin"})).await,
        delete_user(&app, token, &victim_id).await,
        app.get("/v1/admin/audit", token).await,
        app.post_bearer(
            "/v1/admin/clients",
            token,
            Some(json!({"name": "x", "scopes": ["todos:admin"]})),
        )
        .await,
        app.get("/v1/admin/clients", token).await,
        app.get(
            &format!("/v1/admin/clients/{}", uuid::Uuid::now_v7()),
            token,
        )
        .await,
        app.client
            .delete(app.url(&format!("/v1/admin/clients/{}", uuid::Uuid::now_v7())))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    ];
    for resp in attempts {
        assert_problem(resp, 403, "FORBIDDEN").await;
    }
    assert_eq!(app.count("users WHERE role = 'admin'").await, 0);
    assert_eq!(app.count("oauth_clients").await, 0);
    assert_eq!(app.count("sessions WHERE revoked_at IS NOT NULL").await, 0);
    assert_eq!(app.count("audit_log").await, audit_before);
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_list_users_with_filters_and_pages() {
    let app = spawn_app().await;
    let (_, admin) = admin_session(&app).await;
    for name in ["anna", "anton", "bert"] {
        let resp = app
            .signup(
                &format!("{name}-{}@example.com", uuid::Uuid::new_v4().simple()),
                PASSWORD,
            )
            .await;
        assert_eq!(resp.status(), 201);
    }
    app.exec("UPDATE users SET disabled = true WHERE email LIKE 'bert-%'")
        .await;

    let (_, page) = json(app.get("/v1/admin/users?q=AN", at(&admin)).await).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    let (_, admins) = json(app.get("/v1/admin/users?role=admin", at(&admin)).await).await;
    assert_eq!(admins["items"].as_array().unwrap().len(), 1);
    let (_, disabled) = json(app.get("/v1/admin/users?disabled=true", at(&admin)).await).await;
    assert_eq!(disabled["items"][0]["disabled"], true);
    assert!(disabled["items"][0].get("password_hash").is_none());

    let (_, first) = json(app.get("/v1/admin/users?limit=3", at(&admin)).await).await;
    let cursor = first["next_cursor"].as_str().expect("a second page");
    let (_, second) = json(
        app.get(
            &format!("/v1/admin/users?limit=3&cursor={cursor}"),
            at(&admin),
        )
        .await,
    )
    .await;
    assert_eq!(
        first["items"].as_array().unwrap().len() + second["items"].as_array().unwrap().len(),
        4
    );
    assert_eq!(second["next_cursor"], Value::Null);
    assert_problem(
        app.get("/v1/admin/users?cursor=zzz", at(&admin)).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_problem(
        app.get("/v1/admin/users?role=root", at(&admin)).await,
        422,
        "VALIDATION_FAILED",
    )
    .await;
    // PostgreSQL refuses NUL in text: it must be a 422 naming the parameter, not a 500.
    for (route, field) in [
        ("/v1/admin/users?limit=5&q=an%00", "q"),
        ("/v1/admin/audit?event=login%00failed", "event"),
    ] {
        let problem =
            assert_problem(app.get(route, at(&admin)).await, 422, "VALIDATION_FAILED").await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    assert_problem(
        app.get("/v1/admin/users/%00", at(&admin)).await,
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn role_change_and_disabling_revoke_sessions_and_are_audited() {
    let app = spawn_app().await;
    let (_, admin) = admin_session(&app).await;
    let admin_id = user_id(&app, &admin).await;
    let (email, target) = app.user_session().await;
    let target_id = user_id(&app, &target).await;

    let (status, got) = json(
        app.get(&format!("/v1/admin/users/{target_id}"), at(&admin))
            .await,
    )
    .await;
    assert_eq!(
        (status.as_u16(), got["email"].as_str()),
        (200, Some(email.as_str()))
    );
    assert!(got.get("password_hash").is_none());

    let resp = patch_user(&app, at(&admin), &target_id, json!({"role": "admin"})).await;
    let (status, user) = json(resp).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["role"], "admin");
    assert_problem(
        app.get("/v1/users/me", at(&target)).await,
        401,
        "TOKEN_REVOKED",
    )
    .await;
    assert!(
        app.denylisted(&format!("sid:{}", target["session_id"].as_str().unwrap()))
            .await
    );

    let again = app.login_ok(&email).await;
    assert_eq!(crate::helpers::claims(at(&again))["role"], "admin");
    let (_, user) =
        json(patch_user(&app, at(&admin), &target_id, json!({"disabled": true})).await).await;
    assert_eq!(user["disabled"], true);
    assert_problem(
        app.get("/v1/users/me", at(&again)).await,
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
    let (_, user) = json(
        patch_user(
            &app,
            at(&admin),
            &target_id,
            json!({"disabled": false, "role": "user"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        (user["disabled"].as_bool(), user["role"].as_str()),
        (Some(false), Some("user"))
    );
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);

    for event in ["role_changed", "user_disabled", "user_enabled"] {
        assert!(
            app.count(&format!("audit_log WHERE event = '{event}' AND actor_id = '{admin_id}' AND subject_id = '{target_id}'")).await >= 1,
            "{event} audited with the acting admin"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_role_and_disabled_can_change() {
    let app = spawn_app().await;
    let (_, admin) = admin_session(&app).await;
    let (email, target) = app.user_session().await;
    let id = user_id(&app, &target).await;
    for (body, status) in [
        (json!({"email": "new@example.com"}), 422),
        (json!({"password_hash": "x"}), 422),
        (json!({"role": "service"}), 422),
        (json!({"role": "root"}), 422),
        (json!({"disabled": "yes"}), 422),
    ] {
        assert_problem(
            patch_user(&app, at(&admin), &id, body).await,
            status,
            "VALIDATION_FAILED",
        )
        .await;
    }
    assert_problem(
        patch_user(
            &app,
            at(&admin),
            &uuid::Uuid::now_v7().to_string(),
            json!({"disabled": true}),
        )
        .await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(
        app.count(&format!(
            "users WHERE email = '{email}' AND role = 'user' AND NOT disabled"
        ))
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_admin_cannot_be_demoted_disabled_or_deleted() {
    let app = spawn_app().await;
    let (_, admin) = admin_session(&app).await;
    let id = user_id(&app, &admin).await;

    for body in [json!({"role": "user"}), json!({"disabled": true})] {
        assert_problem(
            patch_user(&app, at(&admin), &id, body).await,
            409,
            "CONFLICT",
        )
        .await;
    }
    assert_problem(delete_user(&app, at(&admin), &id).await, 409, "CONFLICT").await;
    assert_eq!(
        app.count("users WHERE role = 'admin' AND NOT disabled")
            .await,
        1
    );

    // With a second admin, one can step down.
    let (_, other) = admin_session(&app).await;
    let other_id = user_id(&app, &other).await;
    assert_eq!(
        patch_user(&app, at(&admin), &other_id, json!({"role": "user"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.count("users WHERE role = 'admin' AND NOT disabled")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_admins_demoting_each_other_at_once_leave_one() {
    let app = spawn_app().await;
    let (_, a) = admin_session(&app).await;
    let (_, b) = admin_session(&app).await;
    let (a_id, b_id) = (user_id(&app, &a).await, user_id(&app, &b).await);

    let (ra, rb) = tokio::join!(
        patch_user(&app, at(&a), &b_id, json!({"role": "user"})),
        patch_user(&app, at(&b), &a_id, json!({"role": "user"})),
    );

    let statuses = [ra.status().as_u16(), rb.status().as_u16()];
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(
        app.count("users WHERE role = 'admin' AND NOT disabled")
            .await,
        1
    );
}
