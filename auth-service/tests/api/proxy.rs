//! The client ip behind a trusted proxy: only the configured header is believed, and IPv6
//! clients are limited per /64.

use serde_json::json;
use shared::ratelimit::Rate;

use crate::helpers::{PASSWORD, TestApp, spawn_app_with, unique_email};
use crate::limits::{assert_limited, generous};

/// A login as nginx would forward it: `X-Forwarded-For` set by the proxy, plus whatever
/// other headers the client wrote.
async fn login_via_proxy(
    app: &TestApp,
    email: &str,
    xff: &str,
    extra: &[(&str, String)],
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", xff)
        .json(&json!({"email": email, "password": PASSWORD}));
    for (name, value) in extra {
        req = req.header(*name, value);
    }
    req.send().await.unwrap()
}

async fn behind_proxy(configure: impl FnOnce(&mut auth_service::config::Settings)) -> TestApp {
    spawn_app_with(|s| {
        generous(s);
        s.auth.rate_login_ip = Rate::new(3, 60);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        configure(s);
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_written_forwarded_header_gets_no_fresh_budget() {
    let app = behind_proxy(|_| {}).await;
    let client = "203.0.113.5";
    for i in 0..3 {
        let forged = vec![("forwarded", format!("for=198.51.100.{i}"))];
        let resp = login_via_proxy(&app, &unique_email(), client, &forged).await;
        assert_eq!(resp.status(), 401);
    }
    let forged = vec![("forwarded", "for=198.51.100.99".to_owned())];
    assert_limited(
        login_via_proxy(&app, &unique_email(), client, &forged).await,
        "login-ip",
    )
    .await;

    // Nor does it reach the records: the session and audit rows carry the proxy's word.
    let app = behind_proxy(|_| {}).await;
    let email = app.new_user().await;
    let forged = vec![("forwarded", "for=192.0.2.200".to_owned())];
    let resp = login_via_proxy(&app, &email, client, &forged).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        app.count(&format!("sessions WHERE ip = '{client}'")).await,
        1
    );
    assert_eq!(app.count("audit_log WHERE ip = '192.0.2.200'").await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forwarded_header_is_believed_when_configured_and_then_alone() {
    let app = behind_proxy(|s| s.http.forwarded_header = "Forwarded".parse().unwrap()).await;
    for i in 0..5 {
        let headers = vec![("forwarded", format!("for=198.51.100.{i}"))];
        let resp = login_via_proxy(&app, &unique_email(), "203.0.113.5", &headers).await;
        assert_eq!(resp.status(), 401, "each client has its own budget");
    }
    // Now X-Forwarded-For is the client's to write: rotating it changes nothing.
    let same = vec![("forwarded", "for=198.51.100.50".to_owned())];
    for i in 0..3 {
        let xff = format!("203.0.113.{i}");
        assert_eq!(
            login_via_proxy(&app, &unique_email(), &xff, &same)
                .await
                .status(),
            401
        );
    }
    assert_limited(
        login_via_proxy(&app, &unique_email(), "203.0.113.77", &same).await,
        "login-ip",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_clients_share_one_budget_per_64() {
    let app = behind_proxy(|_| {}).await;
    for i in 1..=3 {
        let ip = format!("2001:db8:7:1::{i:x}");
        let resp = login_via_proxy(&app, &unique_email(), &ip, &[]).await;
        assert_eq!(resp.status(), 401);
    }
    assert_limited(
        login_via_proxy(&app, &unique_email(), "2001:db8:7:1:ffff:1:2:3", &[]).await,
        "login-ip",
    )
    .await;
    let other_64 = login_via_proxy(&app, &unique_email(), "2001:db8:7:2::1", &[]).await;
    assert_eq!(other_64.status(), 401, "another /64 has its own budget");
    // The records keep the full address.
    let email = app.new_user().await;
    let resp = login_via_proxy(&app, &email, "2001:db8:7:3::abcd", &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        app.count("sessions WHERE ip = '2001:db8:7:3::abcd'").await,
        1
    );
}
