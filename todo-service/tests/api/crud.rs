use serde_json::{Value, json};
use shared::testing::json;

use crate::helpers::{assert_problem, spawn_stack};

#[tokio::test(flavor = "multi_thread")]
async fn a_todo_is_created_read_patched_and_deleted() {
    let stack = spawn_stack().await;
    let user = stack.user().await;

    let resp = stack
        .post(
            &user,
            "/v1/todos",
            &json!({"title": "  Buy milk ", "due_at": "2030-01-02T03:04:05Z"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let (_, todo) = json(resp).await;
    assert_eq!(todo["title"], "Buy milk");
    assert_eq!(todo["done"], false);
    assert_eq!(todo["description"], Value::Null);
    assert_eq!(todo["version"], 1);
    let due: chrono::DateTime<chrono::Utc> = todo["due_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(due.to_rfc3339(), "2030-01-02T03:04:05+00:00");
    let id = todo["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/todos/{id}"));
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);

    let resp = stack.get(&user, &location).send().await.unwrap();
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let (status, got) = json(resp).await;
    assert_eq!((status.as_u16(), &got), (200, &todo));

    let resp = stack
        .patch(
            &user,
            &location,
            &json!({"done": true, "description": "2 litres", "due_at": null}),
        )
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["etag"], "\"2\"");
    let (status, patched) = json(resp).await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["done"], true);
    assert_eq!(patched["description"], "2 litres");
    assert_eq!(patched["due_at"], Value::Null);
    assert_eq!(patched["title"], "Buy milk", "absent fields stay");
    assert_eq!(patched["version"], 2);

    let resp = stack
        .patch(&user, &location, &json!({"description": null}))
        .send()
        .await
        .unwrap();
    let (_, cleared) = json(resp).await;
    assert_eq!(cleared["description"], Value::Null);
    assert_eq!(cleared["version"], 3);

    let resp = stack.delete(&user, &location).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_problem(
        stack.get(&user, &location).send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
    assert_problem(
        stack.delete(&user, &location).send().await.unwrap(),
        404,
        "NOT_FOUND",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn if_none_match_gives_304() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let todo = stack.create(&user, json!({"title": "t"})).await;
    let path = format!("/v1/todos/{}", todo["id"].as_str().unwrap());
    let resp = stack
        .get(&user, &path)
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 304);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_todos_are_refused_and_nothing_is_created() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let cases = [
        (json!({"title": ""}), 422, Some("title")),
        (json!({"title": "   "}), 422, Some("title")),
        (json!({"title": "x".repeat(201)}), 422, Some("title")),
        (json!({"title": "a\u{0007}b"}), 422, Some("title")),
        (
            json!({"title": "ok", "description": "d".repeat(2001)}),
            422,
            Some("description"),
        ),
        (json!({"description": "no title"}), 422, Some("title")),
        (
            json!({"title": "ok", "owner_id": "someone-else"}),
            422,
            Some("owner_id"),
        ),
        (json!({"title": "ok", "version": 7}), 422, Some("version")),
        (
            json!({"title": "ok", "due_at": "tomorrow"}),
            422,
            Some("due_at"),
        ),
        (json!({"title": ["x"]}), 422, Some("title")),
        (json!({"title": "ok", "done": "yes"}), 422, Some("done")),
    ];
    for (body, status, field) in cases {
        let resp = stack.post(&user, "/v1/todos", &body).send().await.unwrap();
        let problem = assert_problem(resp, status, "VALIDATION_FAILED").await;
        if let Some(field) = field {
            assert_eq!(problem["errors"][0]["field"], field, "{body}");
        }
    }
    let (_, page) = json(stack.get(&user, "/v1/todos").send().await.unwrap()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_patch_changes_nothing() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let todo = stack.create(&user, json!({"title": "keep"})).await;
    let path = format!("/v1/todos/{}", todo["id"].as_str().unwrap());
    for (body, status) in [
        (json!({"title": null}), 422),
        (json!({"title": ""}), 422),
        (json!({"done": null}), 422),
        (json!({"id": "x"}), 422),
        (json!({"version": 9}), 422),
        (json!({"due_at": "soon"}), 422),
    ] {
        let resp = stack.patch(&user, &path, &body).send().await.unwrap();
        assert_problem(resp, status, "VALIDATION_FAILED").await;
    }
    let (_, now) = json(stack.get(&user, &path).send().await.unwrap()).await;
    assert_eq!(now, todo);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_if_match_is_412_and_changes_nothing() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let todo = stack.create(&user, json!({"title": "v1"})).await;
    let path = format!("/v1/todos/{}", todo["id"].as_str().unwrap());
    stack
        .patch(&user, &path, &json!({"title": "v2"}))
        .send()
        .await
        .unwrap();

    // A stale tag, garbage, and the current version as a weak tag (If-Match compares
    // strongly, RFC 9110 section 13.1.1).
    for tag in ["\"1\"", "garbage", "W/\"2\""] {
        let resp = stack
            .patch(&user, &path, &json!({"title": "lost update"}))
            .header("if-match", tag)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 412, "PRECONDITION_FAILED").await;
        let resp = stack
            .delete(&user, &path)
            .header("if-match", tag)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 412, "PRECONDITION_FAILED").await;
    }
    let (_, now) = json(stack.get(&user, &path).send().await.unwrap()).await;
    assert_eq!(
        (now["title"].as_str(), now["version"].as_i64()),
        (Some("v2"), Some(2))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_concurrent_patches_with_one_etag_one_wins() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    for round in 0..5 {
        let todo = stack
            .create(&user, json!({"title": format!("race {round}")}))
            .await;
        let path = format!("/v1/todos/{}", todo["id"].as_str().unwrap());
        let a = stack
            .patch(&user, &path, &json!({"title": "a"}))
            .header("if-match", "\"1\"")
            .send();
        let b = stack
            .patch(&user, &path, &json!({"title": "b"}))
            .header("if-match", "\"1\"")
            .send();
        let (a, b) = tokio::join!(a, b);
        let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 412], "round {round}");
        let (_, now) = json(stack.get(&user, &path).send().await.unwrap()).await;
        assert_eq!(now["version"], 2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_per_owner_limit_is_enforced() {
    let stack = crate::helpers::spawn_stack_with(shared::testing::redis_url(), |t| {
        t.max_todos_per_owner = 3
    })
    .await;
    let user = stack.user().await;
    let other = stack.user().await;
    // In flight together, with and without an Idempotency-Key (two ways to create).
    let creates = (0..6).map(|i| {
        let req = stack.post(&user, "/v1/todos", &json!({"title": format!("t{i}")}));
        if i % 2 == 0 {
            req.header("idempotency-key", format!("key-{i}")).send()
        } else {
            req.send()
        }
    });
    let statuses: Vec<u16> = futures_util::future::join_all(creates)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    let resp = stack
        .post(&user, "/v1/todos", &json!({"title": "one more"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(resp, 409, "CONFLICT").await;
    assert!(body["detail"].as_str().unwrap().contains('3'));
    stack
        .create(&other, json!({"title": "others are not affected"}))
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_todo_frees_its_place_under_the_limit() {
    let stack = crate::helpers::spawn_stack_with(shared::testing::redis_url(), |t| {
        t.max_todos_per_owner = 2
    })
    .await;
    let user = stack.user().await;
    let admin = stack.admin().await;
    let first = stack.create(&user, json!({"title": "one"})).await;
    let second = stack.create(&user, json!({"title": "two"})).await;
    let full = stack
        .post(&user, "/v1/todos", &json!({"title": "three"}))
        .send()
        .await
        .unwrap();
    assert_problem(full, 409, "CONFLICT").await;

    // Refused deletes (a stale version, someone else's todo) free nothing.
    let path = format!("/v1/todos/{}", first["id"].as_str().unwrap());
    let stale = stack
        .delete(&user, &path)
        .header("if-match", "\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    let other = stack.user().await;
    assert_eq!(
        stack.delete(&other, &path).send().await.unwrap().status(),
        404
    );
    let still_full = stack
        .post(&user, "/v1/todos", &json!({"title": "three"}))
        .send()
        .await
        .unwrap();
    assert_problem(still_full, 409, "CONFLICT").await;

    // The owner's delete frees one place; an admin's delete frees another.
    assert_eq!(
        stack.delete(&user, &path).send().await.unwrap().status(),
        204
    );
    stack.create(&user, json!({"title": "three"})).await;
    let admin_path = format!("/v1/admin/todos/{}", second["id"].as_str().unwrap());
    assert_eq!(
        stack
            .delete(&admin, &admin_path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    stack.create(&user, json!({"title": "four"})).await;
    let full = stack
        .post(&user, "/v1/todos", &json!({"title": "five"}))
        .send()
        .await
        .unwrap();
    assert_problem(full, 409, "CONFLICT").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_are_rate_limited_per_caller() {
    let stack = crate::helpers::spawn_stack_with(shared::testing::redis_url(), |t| {
        t.rate_write_user = shared::ratelimit::Rate::new(3, 60);
    })
    .await;
    let user = stack.user().await;
    let other = stack.user().await;
    let todo = stack.create(&user, json!({"title": "one"})).await;
    let path = format!("/v1/todos/{}", todo["id"].as_str().unwrap());
    stack
        .patch(&user, &path, &json!({"done": true}))
        .send()
        .await
        .unwrap();
    let third = stack
        .post(&user, "/v1/todos", &json!({"title": "three"}))
        .send()
        .await
        .unwrap();
    assert!(
        third.headers()["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("\"todo-write\";q=3;w=60")
    );

    let resp = stack.delete(&user, &path).send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    assert_problem(resp, 429, "RATE_LIMITED").await;
    assert_eq!(
        stack.status(&user, &path).await,
        200,
        "reads are not limited"
    );
    stack
        .create(&other, json!({"title": "others have their own budget"}))
        .await;
}
