//! Logins in flight across a change that revokes: none outlives it.
//!
//! Logins are fired one after another while a password change, a demotion or a disabling
//! commits in the middle; with one hashing slot they queue, so several are between reading
//! the user and opening their session when the change commits. Afterwards no session opened
//! with the old state may be usable, and no usable token carries the old role.

use std::time::Duration;

use serde_json::{Value, json};
use shared::ratelimit::Rate;

use crate::admin::admin_session;
use crate::helpers::{PASSWORD, TestApp, claims, json, spawn_app_with};

/// Logins fired before the change starts, and after it has committed.
const BEFORE: usize = 4;
const AFTER: usize = 2;

#[derive(Debug, Clone, Copy)]
enum Change {
    Password,
    Demotion,
    Disabling,
}

async fn app() -> TestApp {
    spawn_app_with(|s| {
        let big = Rate::new(10_000, 60);
        s.auth.rate_login_ip = big;
        s.auth.rate_login_account = big;
        s.auth.rate_password_change = big;
        // One hash at a time: the logins queue, so the change lands among them.
        s.auth.hash_concurrency = 1;
        s.auth.hash_queue = 64;
    })
    .await
}

fn at(pair: &Value) -> &str {
    pair["access_token"].as_str().unwrap()
}

async fn user_id(app: &TestApp, pair: &Value) -> String {
    let (_, me) = json(app.get("/v1/users/me", at(pair)).await).await;
    me["id"].as_str().unwrap().to_owned()
}

/// Fire logins for `email` 10 ms apart: `BEFORE` of them, then more all the while `change`
/// runs, then `AFTER` more; returns the bodies of the logins that succeeded and how many
/// were refused.
async fn logins_across(
    app: &TestApp,
    email: &str,
    change: impl std::future::Future<Output = reqwest::Response>,
) -> (Vec<Value>, usize) {
    let gap = Duration::from_millis(10);
    let mut logins = Vec::new();
    for _ in 0..BEFORE {
        logins.push(spawn_login(app, email));
        tokio::time::sleep(gap).await;
    }
    let mut change = std::pin::pin!(change);
    loop {
        tokio::select! {
            resp = &mut change => {
                assert!(resp.status().is_success(), "the change: {}", resp.status());
                break;
            }
            () = tokio::time::sleep(gap) => logins.push(spawn_login(app, email)),
        }
    }
    for _ in 0..AFTER {
        logins.push(spawn_login(app, email));
        tokio::time::sleep(gap).await;
    }
    let (mut ok, mut refused) = (Vec::new(), 0);
    for login in logins {
        let (status, body) = login.await.unwrap();
        match status {
            200 => ok.push(body),
            401 => {
                assert_eq!(body["code"], "INVALID_CREDENTIALS", "{body}");
                refused += 1;
            }
            // The hashing queue was full (a slow machine): no session either.
            503 => assert_eq!(body["code"], "SERVICE_UNAVAILABLE", "{body}"),
            other => panic!("login answered {other}: {body}"),
        }
    }
    (ok, refused)
}

fn spawn_login(app: &TestApp, email: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}));
    tokio::spawn(async move {
        let resp = request.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

/// Whether the session behind `pair` still works anywhere: its access token at the auth
/// service, its refresh token, or its access token at a resource server, which trusts the
/// token until its session is on the denylist (published within a second).
async fn usable(app: &TestApp, pair: &Value) -> bool {
    let me = app.get("/v1/users/me", at(pair)).await.status();
    let refresh = app
        .refresh(pair["refresh_token"].as_str().unwrap())
        .await
        .status();
    let member = format!("sid:{}", pair["session_id"].as_str().unwrap());
    let mut denylisted = false;
    for _ in 0..20 {
        denylisted = app.denylisted(&member).await;
        if denylisted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    me == 200 || refresh == 200 || !denylisted
}

async fn run(change: Change) {
    let app = app().await;
    let (_, admin) = admin_session(&app).await;
    let email = app.new_user().await;
    let own = app.login_ok(&email).await;
    let id = user_id(&app, &own).await;
    if let Change::Demotion = change {
        app.exec(&format!(
            "UPDATE users SET role = 'admin' WHERE id = '{id}'"
        ))
        .await;
    }
    let patch = |body: Value| {
        app.client
            .patch(app.url(&format!("/v1/admin/users/{id}")))
            .bearer_auth(at(&admin))
            .json(&body)
            .send()
    };
    let (ok, refused) = match change {
        Change::Password => {
            let body = json!({
                "current_password": PASSWORD,
                "new_password": "a completely different passphrase",
            });
            let request = app
                .client
                .post(app.url("/v1/users/me/password"))
                .bearer_auth(at(&own))
                .json(&body)
                .send();
            logins_across(&app, &email, async { request.await.unwrap() }).await
        }
        Change::Demotion => {
            logins_across(&app, &email, async {
                patch(json!({"role": "user"})).await.unwrap()
            })
            .await
        }
        Change::Disabling => {
            logins_across(&app, &email, async {
                patch(json!({"disabled": true})).await.unwrap()
            })
            .await
        }
    };
    let mut old_state = 0;
    for pair in &ok {
        let role = claims(at(pair))["role"].as_str().unwrap().to_owned();
        let opened_with_old_state = match change {
            // Every one of these logins used the old password / an enabled account.
            Change::Password | Change::Disabling => true,
            Change::Demotion => role == "admin",
        };
        if !opened_with_old_state {
            continue;
        }
        old_state += 1;
        assert!(
            !usable(&app, pair).await,
            "{change:?}: a session opened with the old state is still usable"
        );
        if role == "admin" {
            let resp = app.get("/v1/admin/users", at(pair)).await;
            assert_eq!(resp.status(), 401, "{change:?}: an old admin token works");
        }
    }
    // The race was really run: some login checked its password against the old state and
    // then found the account changed when it came to open its session.
    assert!(
        app.count("audit_log WHERE details->>'reason' = 'account_changed'")
            .await
            > 0,
        "{change:?}: no login was in flight across the change ({old_state} old, {refused} refused)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_login_in_flight_outlives_a_password_change() {
    run(Change::Password).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_login_in_flight_outlives_a_demotion() {
    run(Change::Demotion).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn no_login_in_flight_outlives_a_disabling() {
    run(Change::Disabling).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_in_flight_across_a_deletion_never_deadlock_with_it() {
    let app = app().await;
    let (_, admin) = admin_session(&app).await;
    for round in 0..4 {
        let email = app.new_user().await;
        let mut pairs = Vec::new();
        for _ in 0..6 {
            pairs.push(app.login_ok(&email).await);
        }
        let id = user_id(&app, &pairs[0]).await;
        // A spent token too, so that reuse (which revokes and audits) is in the mix.
        let spent = pairs[0]["refresh_token"].as_str().unwrap().to_owned();
        let (status, next) = json(app.refresh(&spent).await).await;
        assert_eq!(status, 200, "{next}");

        let mut refreshes = Vec::new();
        for pair in &pairs[1..] {
            for _ in 0..6 {
                let token = pair["refresh_token"].as_str().unwrap().to_owned();
                refreshes.push(spawn_refresh(&app, token));
            }
        }
        for _ in 0..3 {
            refreshes.push(spawn_refresh(&app, spent.clone()));
            refreshes.push(spawn_refresh(
                &app,
                next["refresh_token"].as_str().unwrap().into(),
            ));
        }
        // Land the deletion among them, a little later each round.
        tokio::time::sleep(Duration::from_millis(2 * round)).await;
        let deletion = app
            .client
            .delete(app.url(&format!("/v1/admin/users/{id}")))
            .bearer_auth(at(&admin))
            .send()
            .await
            .unwrap();
        assert_eq!(deletion.status(), 204);
        for refresh in refreshes {
            let status = refresh.await.unwrap();
            assert!(status < 500, "a refresh failed with {status}");
        }
    }
}

fn spawn_refresh(app: &TestApp, token: String) -> tokio::task::JoinHandle<u16> {
    let request = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .json(&json!({"refresh_token": token}));
    tokio::spawn(async move { request.send().await.unwrap().status().as_u16() })
}
