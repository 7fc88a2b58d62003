//! No limit lets an attacker elsewhere lock the owner out: the owner at a known address,
//! and a client with its valid secret, keep a budget of their own.

use shared::ratelimit::Rate;

use crate::helpers::{PASSWORD, spawn_app_with};
use crate::limits::{assert_limited, generous, login_from};
use crate::oauth::{basic, form, new_client};

const ATTACKERS: [&str; 4] = ["203.0.113.1", "203.0.113.2", "198.51.100.3", "192.0.2.4"];

#[tokio::test(flavor = "multi_thread")]
async fn attackers_spending_every_account_budget_do_not_lock_the_owner_out() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.auth.rate_login_account = Rate::new(4, 60);
    })
    .await;
    let email = app.new_user().await;
    let home = Some("198.51.100.7");
    assert_eq!(login_from(&app, &email, PASSWORD, home).await.status(), 200);

    // Four addresses keep failing until the account's shared budget, and every lock the
    // failures set, is spent.
    for round in 0..3 {
        for ip in ATTACKERS {
            let resp = login_from(&app, &email, "guess guess guess", Some(ip)).await;
            assert!(
                [401, 429].contains(&resp.status().as_u16()),
                "round {round}: {}",
                resp.status()
            );
        }
    }
    assert_limited(
        login_from(&app, &email, PASSWORD, Some("203.0.113.200")).await,
        "login-account",
    )
    .await;

    // The owner, at the address they logged in from before, still logs in: again and again,
    // up to the account rate, from a budget of their own.
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, &email, PASSWORD, home).await.status(),
            200,
            "the owner is locked out"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_with_its_secret_is_not_locked_out_by_failures_under_its_id() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.auth.rate_token_client = Rate::new(4, 60);
    })
    .await;
    let (id, secret) = new_client(&app, &["todos:read"]).await;
    let grant = [("grant_type", "client_credentials")];

    for _ in 0..3 {
        for ip in ATTACKERS {
            let resp = app
                .client
                .post(app.url("/oauth/token"))
                .header("authorization", basic(&id, "not the secret"))
                .header("x-forwarded-for", ip)
                .form(&grant)
                .send()
                .await
                .unwrap();
            assert!([401, 429].contains(&resp.status().as_u16()));
        }
    }
    let failing = app
        .client
        .post(app.url("/oauth/token"))
        .header("authorization", basic(&id, "not the secret"))
        .form(&grant)
        .send()
        .await
        .unwrap();
    assert_limited(failing, "token-client").await;

    for _ in 0..3 {
        let resp = form(&app, "/oauth/token", Some(&basic(&id, &secret)), &grant).await;
        assert_eq!(resp.status(), 200, "the client is locked out");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_logins_is_audited_once_per_account_and_address() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.auth.rate_login_ip = Rate::new(2, 60);
    })
    .await;
    let email = app.new_user().await;
    let flood = futures_util::future::join_all(
        (0..40).map(|_| login_from(&app, &email, "guess guess guess", Some("203.0.113.9"))),
    )
    .await;
    let refused = flood.iter().filter(|r| r.status() == 429).count();
    assert!(refused >= 30, "{refused} refused");
    let throttled = "audit_log WHERE event = 'login_failed' AND details->>'reason' = 'throttled'";
    assert_eq!(app.count(throttled).await, 1);
    // Another account from that address, and that account from another: each still once
    // at most, never one row per refusal.
    let other = app.new_user().await;
    for _ in 0..5 {
        login_from(&app, &other, "guess guess guess", Some("203.0.113.9")).await;
    }
    assert_eq!(
        app.count(throttled).await,
        1,
        "the address was audited already"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("auth_refusals_total{")
                && l.contains("audited=\"false\"")
                && l.contains("kind=\"login\"")),
        "refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_wrong_client_secrets_is_audited_once_per_client_and_address() {
    let app = spawn_app_with(generous).await;
    let (id, _) = new_client(&app, &["todos:read"]).await;
    let grant = [("grant_type", "client_credentials")];
    for _ in 0..20 {
        let resp = form(&app, "/oauth/token", Some(&basic(&id, "wrong")), &grant).await;
        assert!([401, 429].contains(&resp.status().as_u16()));
    }
    assert_eq!(
        app.count("audit_log WHERE event = 'client_auth_failed'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_forgets_the_addresses_that_knew_the_old_one() {
    let app = spawn_app_with(|s| {
        generous(s);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let email = app.new_user().await;
    let resp = login_from(&app, &email, PASSWORD, Some("203.0.113.50")).await;
    let (_, pair) = crate::helpers::json(resp).await;
    let key = auth_service::service::throttle::known_ips_key(&app.state, &email);
    let mut redis = app.redis().await;
    let known: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(known, vec!["203.0.113.50".to_owned()]);

    let resp = app
        .post_bearer(
            "/v1/users/me/password",
            pair["access_token"].as_str().unwrap(),
            Some(serde_json::json!({
                "current_password": PASSWORD,
                "new_password": "an entirely new passphrase",
            })),
        )
        .await;
    assert_eq!(resp.status(), 204);

    let known: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(known.is_empty(), "{known:?}");
}
