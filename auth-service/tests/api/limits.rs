//! Rate limits, brute-force throttling without lockout, and overload behaviour.

use std::time::Duration;

use serde_json::json;
use shared::ratelimit::Rate;

use crate::helpers::{
    PASSWORD, TestApp, assert_problem, json, spawn_app_with, spawn_on, unique_email,
};

/// Settings where nothing but the limit under test is likely to trip.
pub fn generous(s: &mut auth_service::config::Settings) {
    let a = &mut s.auth;
    let big = Rate::new(10_000, 60);
    a.rate_login_ip = big;
    a.rate_login_account = big;
    a.rate_signup_ip = big;
    a.rate_refresh_ip = big;
    a.rate_refresh_session = big;
    a.rate_token_ip = big;
    a.rate_token_client = big;
    a.rate_password_change = big;
    a.rate_reset_ip = big;
    a.rate_reset_account = big;
    a.rate_reset_confirm_ip = big;
    a.rate_verify_ip = big;
    a.rate_verify_resend = big;
    a.rate_email_change = big;
    a.rate_mfa_change = big;
}

pub async fn login_from(
    app: &TestApp,
    email: &str,
    password: &str,
    ip: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"email": email, "password": password}));
    if let Some(ip) = ip {
        req = req.header("x-forwarded-for", ip);
    }
    req.send().await.unwrap()
}

pub async fn assert_limited(resp: reqwest::Response, policy: &str) {
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let policies = resp.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policies.contains(&format!("\"{policy}\"")), "{policies}");
    assert!(resp.headers().contains_key("ratelimit"));
    assert_problem(resp, 429, "RATE_LIMITED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_ip_limit_trips_at_its_count_and_recovers_after_its_window() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.auth.rate_login_ip = Rate::new(3, 2);
    })
    .await;

    for _ in 0..3 {
        let resp = login_from(&app, &unique_email(), PASSWORD, None).await;
        assert_eq!(resp.status(), 401);
        let policy = resp.headers()["ratelimit-policy"].to_str().unwrap();
        assert!(policy.contains("\"login-ip\";q=3;w=2"), "{policy}");
    }
    assert_limited(
        login_from(&app, &unique_email(), PASSWORD, None).await,
        "login-ip",
    )
    .await;
    assert_eq!(
        app.count("audit_log WHERE event = 'login_failed' AND details->>'reason' = 'throttled'")
            .await,
        1
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, &unique_email(), PASSWORD, None)
                .await
                .status(),
            401
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_refresh_and_password_change_limits_trip() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.auth.rate_signup_ip = Rate::new(2, 60);
        s.auth.rate_refresh_session = Rate::new(2, 60);
        s.auth.rate_password_change = Rate::new(1, 60);
    })
    .await;
    let email = app.new_user().await;
    app.new_user().await;
    assert_limited(app.signup(&unique_email(), PASSWORD).await, "signup-ip").await;

    let pair = app.login_ok(&email).await;
    let (_, next) = json(app.refresh(pair["refresh_token"].as_str().unwrap()).await).await;
    let (_, last) = json(app.refresh(next["refresh_token"].as_str().unwrap()).await).await;
    assert_limited(
        app.refresh(last["refresh_token"].as_str().unwrap()).await,
        "refresh-session",
    )
    .await;

    let at = last["access_token"].as_str().unwrap();
    let body =
        json!({"current_password": "wrong wrong wrong", "new_password": "another fine passphrase"});
    assert_problem(
        app.post_bearer("/v1/users/me/password", at, Some(body.clone()))
            .await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_limited(
        app.post_bearer("/v1/users/me/password", at, Some(body))
            .await,
        "password-change",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_one_limit() {
    let a = spawn_app_with(|s| {
        generous(s);
        s.auth.rate_login_ip = Rate::new(4, 60);
    })
    .await;
    let mut settings = a.state.settings.clone();
    settings.http.listen_addr = "127.0.0.1:0".parse().unwrap();
    let b = spawn_on(settings, a.database.clone(), a.redis_prefix.clone()).await;

    for app in [&a, &b, &a, &b] {
        assert_eq!(
            login_from(app, &unique_email(), PASSWORD, None)
                .await
                .status(),
            401
        );
    }
    assert_limited(
        login_from(&b, &unique_email(), PASSWORD, None).await,
        "login-ip",
    )
    .await;
    assert_limited(
        login_from(&a, &unique_email(), PASSWORD, None).await,
        "login-ip",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_is_ignored_from_untrusted_peers_and_honoured_from_trusted_ones() {
    let untrusted = spawn_app_with(|s| {
        generous(s);
        s.auth.rate_login_ip = Rate::new(2, 60);
    })
    .await;
    for i in 0..2 {
        let resp = login_from(
            &untrusted,
            &unique_email(),
            PASSWORD,
            Some(&format!("10.9.9.{i}")),
        )
        .await;
        assert_eq!(resp.status(), 401);
    }
    let rotated = login_from(&untrusted, &unique_email(), PASSWORD, Some("10.9.9.77")).await;
    assert_limited(rotated, "login-ip").await;

    let trusted = spawn_app_with(|s| {
        generous(s);
        s.auth.rate_login_ip = Rate::new(2, 60);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for i in 0..6 {
        let resp = login_from(
            &trusted,
            &unique_email(),
            PASSWORD,
            Some(&format!("10.9.9.{i}")),
        )
        .await;
        assert_eq!(resp.status(), 401, "each client ip has its own budget");
    }
    let email = trusted.new_user().await;
    assert_eq!(
        login_from(&trusted, &email, PASSWORD, Some("192.0.2.44"))
            .await
            .status(),
        200
    );
    assert_eq!(trusted.count("sessions WHERE ip = '192.0.2.44'").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_owner_still_logs_in_while_an_attacker_fails_elsewhere() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.auth.throttle_ip_failures = 3;
        s.auth.throttle_account_failures = 6;
    })
    .await;
    let email = app.new_user().await;
    let home = Some("198.51.100.7");
    assert_eq!(login_from(&app, &email, PASSWORD, home).await.status(), 200);

    // One attacker ip: throttled after 3 failures, even with the right password.
    for _ in 0..3 {
        assert_problem(
            login_from(&app, &email, "guess guess guess", Some("203.0.113.1")).await,
            401,
            "INVALID_CREDENTIALS",
        )
        .await;
    }
    assert_limited(
        login_from(&app, &email, PASSWORD, Some("203.0.113.1")).await,
        "login-ip",
    )
    .await;
    assert_eq!(
        login_from(&app, &email, PASSWORD, home).await.status(),
        200,
        "the owner is not blocked"
    );

    // A spray from many ips: unknown ips wait, the owner's known ip does not.
    for i in 0..6 {
        login_from(
            &app,
            &email,
            "guess guess guess",
            Some(&format!("203.0.113.{}", 10 + i)),
        )
        .await;
    }
    assert_limited(
        login_from(&app, &email, PASSWORD, Some("203.0.113.99")).await,
        "login-ip",
    )
    .await;
    assert_eq!(login_from(&app, &email, PASSWORD, home).await.status(), 200);
    assert!(
        app.count("audit_log WHERE event = 'login_failed'").await >= 9,
        "every failure is audited"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttled_answers_do_not_tell_accounts_apart() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.auth.throttle_ip_failures = 2;
    })
    .await;
    let real = app.new_user().await;
    let ghost = unique_email();
    let mut bodies = Vec::new();
    for email in [&real, &ghost] {
        for _ in 0..2 {
            assert_eq!(
                login_from(&app, email, "wrong wrong wrong", None)
                    .await
                    .status(),
                401
            );
        }
        let resp = login_from(&app, email, "wrong wrong wrong", None).await;
        let retry = resp.headers()["retry-after"].clone();
        let mut body = assert_problem(resp, 429, "RATE_LIMITED").await;
        body.as_object_mut().unwrap().remove("request_id");
        bodies.push((body, retry));
    }
    assert_eq!(bodies[0], bodies[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_flood_beyond_hashing_capacity_gets_503s_while_health_answers() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.auth.hash_concurrency = 1;
        s.auth.hash_queue = 1;
    })
    .await;
    let email = app.new_user().await;

    let logins = (0..24).map(|_| login_from(&app, &email, PASSWORD, None));
    let health = async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
    };
    let (responses, health) = tokio::join!(futures_util::future::join_all(logins), health);

    assert_eq!(health, 200);
    let mut unavailable = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => {}
            503 => {
                assert_eq!(resp.headers()["retry-after"], "1");
                assert_problem(resp, 503, "SERVICE_UNAVAILABLE").await;
                unavailable += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        unavailable >= 12,
        "most of the flood was refused at once ({unavailable})"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_redis_down_limits_fall_back_to_the_process() {
    let mut server = shared::testing::RedisServer::start().await;
    let url = server.url();
    let app = spawn_app_with(|s| {
        generous(s);
        s.auth.rate_login_ip = Rate::new(3, 60);
        s.auth.redis_url = secrecy::SecretString::from(url);
    })
    .await;
    assert_eq!(
        login_from(&app, &unique_email(), PASSWORD, None)
            .await
            .status(),
        401
    );

    server.stop();

    for _ in 0..3 {
        assert_eq!(
            login_from(&app, &unique_email(), PASSWORD, None)
                .await
                .status(),
            401
        );
    }
    assert_limited(
        login_from(&app, &unique_email(), PASSWORD, None).await,
        "login-ip",
    )
    .await;
    let resp = app.client.get(app.url("/readyz")).send().await.unwrap();
    let body = assert_problem(resp, 503, "SERVICE_UNAVAILABLE").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("Degraded: rate_limits"),
        "{body}"
    );
}
