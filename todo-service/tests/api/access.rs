use serde_json::json;
use shared::testing::json;

use crate::helpers::{assert_problem, spawn_stack};

#[tokio::test(flavor = "multi_thread")]
async fn another_users_todo_is_404_and_untouched() {
    let stack = spawn_stack().await;
    let alice = stack.user().await;
    let mallory = stack.user().await;
    let todo = stack
        .create(
            &alice,
            json!({"title": "private", "description": "secret plans"}),
        )
        .await;
    let path = format!("/v1/todos/{}", todo["id"].as_str().unwrap());

    let get = assert_problem(
        stack.get(&mallory, &path).send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    let unknown = format!("/v1/todos/{}", uuid::Uuid::now_v7());
    let missing = assert_problem(
        stack.get(&mallory, &unknown).send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(
        get["detail"], missing["detail"],
        "nothing tells the two apart"
    );
    assert!(!get.to_string().contains("secret"));
    assert_problem(
        stack
            .patch(&mallory, &path, &json!({"title": "mine"}))
            .send()
            .await
            .unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        stack.delete(&mallory, &path).send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    let (_, list) = json(stack.get(&mallory, "/v1/todos").send().await.unwrap()).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 0);

    let (_, still) = json(stack.get(&alice, &path).send().await.unwrap()).await;
    assert_eq!(still, todo);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_bad_tokens_are_401_with_one_body() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let mut parts: Vec<&str> = user.access.split('.').collect();
    let forged_claims = {
        use base64::Engine;
        let mut c = shared::testing::jwt_claims(&user.access);
        c["role"] = json!("admin");
        c["scope"] = json!("todos:read todos:write todos:admin");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    parts[1] = &forged_claims;
    let forged = parts.join(".");

    let mut bodies = Vec::new();
    let none = stack
        .client
        .get(stack.todo_url("/v1/todos"))
        .send()
        .await
        .unwrap();
    bodies.push(assert_problem(none, 401, "TOKEN_INVALID").await);
    for token in ["garbage", "a.b.c", forged.as_str()] {
        let resp = stack.get_with_token(token, "/v1/todos").await;
        bodies.push(assert_problem(resp, 401, "TOKEN_INVALID").await);
    }
    for b in &mut bodies {
        b.as_object_mut().unwrap().remove("request_id");
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));

    // Well signed, but a user's token without the session no revocation could reach.
    let mut sessionless = stack.claims_for(&user.id, "user", "todos:read");
    sessionless.sid = None;
    let resp = stack
        .client
        .get(stack.todo_url("/v1/todos"))
        .bearer_auth(stack.sign(&sessionless))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "TOKEN_INVALID").await;

    let now = chrono::Utc::now().timestamp();
    let mut expired = stack.claims_for(&user.id, "user", "todos:read");
    expired.iat = now - 4000;
    expired.nbf = Some(now - 4000);
    expired.exp = now - 3600;
    let resp = stack
        .client
        .get(stack.todo_url("/v1/todos"))
        .bearer_auth(stack.sign(&expired))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "TOKEN_EXPIRED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn scopes_decide_what_a_token_may_do() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let read_only = crate::helpers::User {
        access: stack.sign(&stack.claims_for(&user.id, "user", "todos:read")),
        ..stack.user().await
    };
    let nothing = crate::helpers::User {
        access: stack.sign(&stack.claims_for(
            &user.id,
            "superuser",
            "todos:read todos:write todos:admin",
        )),
        ..stack.user().await
    };

    assert_eq!(stack.status(&read_only, "/v1/todos").await, 200);
    let resp = stack
        .post(&read_only, "/v1/todos", &json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 403, "FORBIDDEN").await;
    assert!(body["detail"].as_str().unwrap().contains("todos:write"));
    // An unknown role grants nothing, whatever scopes it claims.
    stack.assert_forbidden(&nothing, "/v1/todos").await;
    // A user cannot use the admin routes.
    stack.assert_forbidden(&user, "/v1/admin/todos").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admins_see_and_delete_any_owners_todos() {
    let stack = spawn_stack().await;
    let alice = stack.user().await;
    let bob = stack.user().await;
    let admin = stack.admin().await;
    let a = stack.create(&alice, json!({"title": "alice's"})).await;
    stack.create(&bob, json!({"title": "bob's"})).await;

    let (status, all) = json(stack.get(&admin, "/v1/admin/todos").send().await.unwrap()).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let (_, only) = json(
        stack
            .get(&admin, &format!("/v1/admin/todos?owner_id={}", alice.id))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let items = only["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["title"], "alice's");
    let problem = assert_problem(
        stack
            .get(&admin, "/v1/admin/todos?owner_id=%00")
            .send()
            .await
            .unwrap(),
        422,
        "VALIDATION_FAILED",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "owner_id", "{problem}");

    let path = format!("/v1/admin/todos/{}", a["id"].as_str().unwrap());
    assert_problem(
        stack.delete(&bob, &path).send().await.unwrap(),
        403,
        "FORBIDDEN",
    )
    .await;
    assert_eq!(
        stack.delete(&admin, &path).send().await.unwrap().status(),
        204
    );
    assert_problem(
        stack.delete(&admin, &path).send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    let (_, left) = json(stack.get(&alice, "/v1/todos").send().await.unwrap()).await;
    assert_eq!(left["items"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_routes_can_require_a_login_with_a_second_factor() {
    let stack = crate::helpers::spawn_stack_with(shared::testing::redis_url(), |s| {
        s.admin_require_mfa = true
    })
    .await;
    // A real admin login with the password alone.
    let admin = stack.admin().await;
    let refused = assert_problem(
        stack.get(&admin, "/v1/admin/todos").send().await.unwrap(),
        403,
        "FORBIDDEN",
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("second factor"),
        "{refused}"
    );
    // The same admin after a login with an authenticator.
    let mut claims = stack.claims_for(&admin.id, "admin", "todos:read todos:write todos:admin");
    claims.amr = Some(vec!["pwd".into(), "otp".into(), "mfa".into()]);
    let token = stack.sign(&claims);
    let resp = stack.get_with_token(&token, "/v1/admin/todos").await;
    assert_eq!(resp.status(), 200);
    // A service client has no login to ask about.
    let service = stack.sign(&stack.claims_for("reporting", "service", "todos:admin"));
    let resp = stack.get_with_token(&service, "/v1/admin/todos").await;
    assert_eq!(resp.status(), 200);
}
