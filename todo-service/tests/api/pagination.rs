use std::collections::HashSet;

use serde_json::{Value, json};
use shared::testing::json;

use crate::helpers::{Stack, User, assert_problem, spawn_stack};

async fn page(stack: &Stack, user: &User, query: &str) -> (Vec<Value>, Option<String>) {
    let (status, body) = json(
        stack
            .get(user, &format!("/v1/todos?{query}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let items = body["items"].as_array().unwrap().clone();
    (items, body["next_cursor"].as_str().map(str::to_owned))
}

async fn all_pages(
    stack: &Stack,
    user: &User,
    query: &str,
    between: impl AsyncFn(usize),
) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for n in 0.. {
        let q = match &cursor {
            Some(c) => format!("{query}&cursor={c}"),
            None => query.to_owned(),
        };
        let (mut got, next) = page(stack, user, &q).await;
        items.append(&mut got);
        between(n).await;
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    items
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_stay_correct_while_todos_are_inserted_between_them() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    let mut originals = HashSet::new();
    for i in 0..25 {
        let todo = stack
            .create(&user, json!({"title": format!("t{i:02}")}))
            .await;
        originals.insert(todo["id"].as_str().unwrap().to_owned());
    }

    for sort in ["created_at", "-created_at"] {
        let inserted = std::sync::Mutex::new(Vec::new());
        let items = all_pages(&stack, &user, &format!("limit=7&sort={sort}"), async |n| {
            // Other writers add todos between every page.
            let todo = stack
                .create(&user, json!({"title": format!("new {sort} {n}")}))
                .await;
            inserted
                .lock()
                .unwrap()
                .push(todo["id"].as_str().unwrap().to_owned());
        })
        .await;
        let ids: Vec<String> = items
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no todo is seen twice ({sort})");
        for id in &originals {
            assert!(
                ids.contains(id),
                "every todo that existed throughout is seen ({sort})"
            );
        }
        let created: Vec<&str> = items
            .iter()
            .map(|t| t["created_at"].as_str().unwrap())
            .collect();
        let mut sorted = created.clone();
        sorted.sort();
        if sort == "-created_at" {
            sorted.reverse();
        }
        assert_eq!(created, sorted, "in {sort} order");
        originals.extend(inserted.into_inner().unwrap());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn due_at_sorts_soonest_first_with_undated_last_and_done_filters() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    for (title, due, done) in [
        ("c", Some("2031-01-01T00:00:00Z"), false),
        ("none1", None, true),
        ("a", Some("2029-01-01T00:00:00Z"), true),
        ("none2", None, false),
        ("b", Some("2030-01-01T00:00:00Z"), false),
        ("b2", Some("2030-01-01T00:00:00Z"), false),
    ] {
        stack
            .create(&user, json!({"title": title, "due_at": due, "done": done}))
            .await;
    }
    // Another owner's todos, dated and not, are in neither of the page's two queries.
    let other = stack.user().await;
    for due in [Some("2029-06-01T00:00:00Z"), None] {
        stack
            .create(&other, json!({"title": "other's", "due_at": due}))
            .await;
    }

    // Every page size: pages end before, at and after the last dated todo, so the next page
    // starts among the dated ones, at the first undated one, or among the undated ones.
    // (b and b2 share a due date: their order is by id, so either may come first.)
    fn sorted(mut part: Vec<&str>) -> Vec<&str> {
        part.sort_unstable();
        part
    }
    for limit in 1..=7 {
        let query = format!("sort=due_at&limit={limit}");
        let items = all_pages(&stack, &user, &query, async |_| {}).await;
        let titles: Vec<&str> = items.iter().map(|t| t["title"].as_str().unwrap()).collect();
        assert_eq!(titles.len(), 6, "limit {limit}: {titles:?}");
        assert_eq!(titles[0], "a", "limit {limit}: {titles:?}");
        assert_eq!(
            sorted(titles[1..3].to_vec()),
            ["b", "b2"],
            "limit {limit}: {titles:?}"
        );
        assert_eq!(titles[3], "c", "limit {limit}: {titles:?}");
        assert_eq!(
            sorted(titles[4..].to_vec()),
            ["none1", "none2"],
            "limit {limit}"
        );
    }
    let query = "sort=due_at&done=false&limit=1";
    let items = all_pages(&stack, &user, query, async |_| {}).await;
    let titles: Vec<&str> = items.iter().map(|t| t["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 4, "{titles:?}");
    assert_eq!(sorted(titles[..2].to_vec()), ["b", "b2"], "{titles:?}");
    assert_eq!(
        titles[2..],
        ["c", "none2"],
        "the filter holds on both sides of the boundary"
    );

    let (done, _) = page(&stack, &user, "done=true").await;
    let mut titles: Vec<&str> = done.iter().map(|t| t["title"].as_str().unwrap()).collect();
    titles.sort_unstable();
    assert_eq!(titles, ["a", "none1"]);
    let (open, _) = page(&stack, &user, "done=false&sort=-created_at").await;
    assert_eq!(open.len(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_list_parameters_are_problems() {
    let stack = spawn_stack().await;
    let user = stack.user().await;
    stack.create(&user, json!({"title": "x"})).await;
    stack.create(&user, json!({"title": "y"})).await;
    let (_, cursor) = page(&stack, &user, "limit=1").await;
    let cursor = cursor.unwrap();

    for (query, status) in [
        ("limit=0", 422),
        ("limit=101", 422),
        ("limit=abc", 422),
        ("sort=title", 422),
        ("done=maybe", 422),
        ("cursor=not-a-cursor", 422),
    ] {
        let resp = stack
            .get(&user, &format!("/v1/todos?{query}"))
            .send()
            .await
            .unwrap();
        assert_problem(resp, status, "VALIDATION_FAILED").await;
    }
    // A cursor belongs to its sort order.
    let resp = stack
        .get(&user, &format!("/v1/todos?sort=due_at&cursor={cursor}"))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(resp, 422, "VALIDATION_FAILED").await;
    assert_eq!(problem["errors"][0]["field"], "cursor");
    let (items, _) = page(&stack, &user, "limit=100").await;
    assert_eq!(items.len(), 2);
}
