//! Email verification, email change and password reset, with the mail read from a real
//! SMTP server (see `mail_sink`).

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use shared::ratelimit::Rate;

use crate::helpers::{PASSWORD, TestApp, assert_problem, claims, json, unique_email};
use crate::limits::{assert_limited, generous};
use crate::mail_sink::{APP_URL, MailSink, spawn_app_with_mail};

const NEW_PASSWORD: &str = "a brand new passphrase 42";

async fn me(app: &TestApp, access: &str) -> serde_json::Value {
    let (status, body) = json(app.get("/v1/users/me", access).await).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn verify(app: &TestApp, token: &str) -> reqwest::Response {
    app.post_json("/v1/auth/verify-email", &json!({ "token": token }))
        .await
}

async fn request_reset(app: &TestApp, email: &str) -> (u16, serde_json::Value) {
    let (status, body) = json(
        app.post_json("/v1/auth/password-reset", &json!({ "email": email }))
            .await,
    )
    .await;
    (status.as_u16(), body)
}

async fn confirm_reset(app: &TestApp, token: &str, password: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/password-reset/confirm",
        &json!({ "token": token, "new_password": password }),
    )
    .await
}

async fn reset_mail(sink: &MailSink, email: &str, n: usize) -> String {
    sink.wait_for_subject(email, "Reset your password", n)
        .await
        .token("reset-password")
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_mails_a_link_that_verifies_the_address_once() {
    let (app, sink) = spawn_app_with_mail(|_| {}).await;
    let email = app.new_user().await;
    let pair = app.login_ok(&email).await;
    let access = pair["access_token"].as_str().unwrap();
    assert_eq!(me(&app, access).await["email_verified"], false);
    assert_eq!(claims(access)["email_verified"], false);

    let mail = sink.wait_for_subject(&email, "Confirm your email", 1).await;
    assert_eq!(mail.from, "\"Auth tests\" <auth@example.com>");
    assert!(
        mail.body.contains(&format!("{APP_URL}/#verify-email=")),
        "{}",
        mail.body
    );
    let token = mail.token("verify-email");
    assert_eq!(token.len(), 43, "256 random bits, base64url");
    // Text and HTML, the link an anchor in the HTML.
    assert!(
        mail.content_type.starts_with("multipart/alternative"),
        "{}",
        mail.content_type
    );
    assert!(
        mail.html
            .contains(&format!("<a href=\"{APP_URL}/#verify-email={token}\">")),
        "{}",
        mail.html
    );

    assert_eq!(verify(&app, &token).await.status(), 204);
    assert_eq!(me(&app, access).await["email_verified"], true);
    // New tokens say so; the link is spent.
    let pair = app.login_ok(&email).await;
    assert_eq!(
        claims(pair["access_token"].as_str().unwrap())["email_verified"],
        true
    );
    assert_problem(verify(&app, &token).await, 400, "VERIFY_TOKEN_INVALID").await;
    assert_problem(
        verify(&app, "not-a-token").await,
        400,
        "VERIFY_TOKEN_INVALID",
    )
    .await;
    assert_eq!(
        app.count("audit_log WHERE event = 'email_verified'").await,
        1
    );
    // The token is in the mail only: no row of the outbox or of the tokens holds it (the
    // tokens table has its SHA-256), and no log line.
    assert_no_token_kept(&app, &token).await;
}

/// No row of the mail tables, and no log line, holds `token`.
async fn assert_no_token_kept(app: &TestApp, token: &str) {
    assert!(app.count("email_tokens").await > 0);
    for table in ["mail_outbox", "email_tokens"] {
        assert_eq!(
            app.count(&format!("{table} t WHERE t::text LIKE '%{token}%'"))
                .await,
            0,
            "{table} holds the token"
        );
    }
    assert!(
        !crate::helpers::LOGS.contents().contains(token),
        "a log line holds the token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_is_for_unverified_addresses_and_rate_limited() {
    let (app, sink) = spawn_app_with_mail(|s| s.auth.rate_verify_resend = Rate::new(2, 600)).await;
    let (email, pair) = app.user_session().await;
    let access = pair["access_token"].as_str().unwrap();
    sink.wait_for(&email, 1).await;
    let resend = || app.post_bearer("/v1/auth/verify-email/resend", access, None);
    let (status, body) = json(resend().await).await;
    assert_eq!(status, 202, "{body}");
    let mails = sink.wait_for(&email, 2).await;
    // Either link works (a resend does not spend the first).
    assert_eq!(
        verify(&app, &mails[0].token("verify-email")).await.status(),
        204
    );
    assert_problem(resend().await, 409, "CONFLICT").await;
    assert_limited(resend().await, "verify-resend").await;
    assert_problem(
        verify(&app, &mails[1].token("verify-email")).await,
        400,
        "VERIFY_TOKEN_INVALID",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_answers_alike_for_any_address_and_mails_only_an_account() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let email = app.new_user().await;
    let nobody = unique_email();
    let (status_known, body_known) = request_reset(&app, &email).await;
    let (status_unknown, body_unknown) = request_reset(&app, &nobody).await;
    assert_eq!(status_known, 202);
    assert_eq!((status_known, &body_known), (status_unknown, &body_unknown));
    // Both did the same work: one outbox row each.
    assert_eq!(
        app.count(&format!(
            "mail_outbox WHERE kind = 'password_reset' AND recipient IN ('{email}', '{nobody}')"
        ))
        .await,
        2
    );
    reset_mail(&sink, &email, 1).await;
    // The unknown address's request was settled without a mail.
    for _ in 0..100 {
        if app
            .count("mail_outbox WHERE kind = 'password_reset' AND status = 'skipped'")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count("mail_outbox WHERE kind = 'password_reset' AND status = 'skipped'")
            .await,
        1
    );
    assert!(sink.to(&nobody).is_empty());
    // A malformed address is a validation error, not an answer about an account.
    let (status, body) = request_reset(&app, "not an address").await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_sets_the_password_ends_every_session_and_works_once() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let other = app.login_ok(&email).await;
    request_reset(&app, &email).await;
    let token = reset_mail(&sink, &email, 1).await;
    assert!(
        sink.to(&email)
            .iter()
            .any(|m| m.body.contains(&format!("{APP_URL}/#reset-password=")))
    );

    // A password the rules refuse is 422 and does not spend the link.
    let resp = confirm_reset(&app, &token, "password").await;
    assert_eq!(resp.status(), 422);
    assert_eq!(
        confirm_reset(&app, &token, NEW_PASSWORD).await.status(),
        204
    );

    // Every session ended: refresh tokens refused, access tokens revoked.
    for p in [&pair, &other] {
        assert_problem(
            app.refresh(p["refresh_token"].as_str().unwrap()).await,
            401,
            "REFRESH_TOKEN_INVALID",
        )
        .await;
        assert_problem(
            app.get("/v1/users/me", p["access_token"].as_str().unwrap())
                .await,
            401,
            "TOKEN_REVOKED",
        )
        .await;
    }
    assert_problem(
        app.login(&email, PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let (status, fresh) = json(app.login(&email, NEW_PASSWORD).await).await;
    assert_eq!(status, 200, "{fresh}");
    // The link reached the address: it counts as verified.
    assert_eq!(
        me(&app, fresh["access_token"].as_str().unwrap()).await["email_verified"],
        true
    );
    assert_problem(
        confirm_reset(&app, &token, "yet another passphrase 7").await,
        400,
        "RESET_TOKEN_INVALID",
    )
    .await;
    let notice = sink
        .wait_for_subject(&email, "password was changed", 1)
        .await;
    assert!(notice.body.contains("was reset"), "{}", notice.body);
    assert_eq!(
        app.count("audit_log WHERE event = 'password_reset'").await,
        1
    );
    assert_no_token_kept(&app, &token).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_link_a_password_change_or_expiry_ends_a_reset_link() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;

    // A newer link replaces the older.
    request_reset(&app, &email).await;
    let first = reset_mail(&sink, &email, 1).await;
    request_reset(&app, &email).await;
    let second = reset_mail(&sink, &email, 2).await;
    assert_problem(
        confirm_reset(&app, &first, NEW_PASSWORD).await,
        400,
        "RESET_TOKEN_INVALID",
    )
    .await;

    // A password change spends it.
    let resp = app
        .post_bearer(
            "/v1/users/me/password",
            pair["access_token"].as_str().unwrap(),
            Some(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_problem(
        confirm_reset(&app, &second, "another fine passphrase 9").await,
        400,
        "RESET_TOKEN_INVALID",
    )
    .await;
    // The change was mailed too.
    let notice = sink
        .wait_for_subject(&email, "password was changed", 1)
        .await;
    assert!(notice.body.contains("was changed"), "{}", notice.body);

    // An expired link is refused.
    request_reset(&app, &email).await;
    let third = reset_mail(&sink, &email, 3).await;
    app.exec(
        "UPDATE email_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL",
    )
    .await;
    assert_problem(
        confirm_reset(&app, &third, "another fine passphrase 9").await,
        400,
        "RESET_TOKEN_INVALID",
    )
    .await;
    let (status, _) = json(app.login(&email, NEW_PASSWORD).await).await;
    assert_eq!(status, 200, "the password is the changed one");
}

#[tokio::test(flavor = "multi_thread")]
async fn of_concurrent_confirmations_with_one_link_exactly_one_wins() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let email = app.new_user().await;
    request_reset(&app, &email).await;
    let token = reset_mail(&sink, &email, 1).await;
    let attempts = (0..6).map(|i| {
        let app = &app;
        let token = token.clone();
        async move {
            confirm_reset(app, &token, &format!("concurrent passphrase number {i}"))
                .await
                .status()
                .as_u16()
        }
    });
    let mut statuses = join_all(attempts).await;
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 400, 400, 400, 400, 400]);
    assert_eq!(
        app.count("audit_log WHERE event = 'password_reset'").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_requests_are_limited_per_address_but_not_against_its_owner() {
    let (app, _sink) = spawn_app_with_mail(|s| {
        generous(s);
        s.http.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        s.auth.rate_reset_account = Rate::new(2, 600);
    })
    .await;
    let email = app.new_user().await;
    let home = "198.51.100.7";
    let from = |ip: &'static str| {
        app.client
            .post(app.url("/v1/auth/password-reset"))
            .header("x-forwarded-for", ip)
            .json(&json!({ "email": email }))
            .send()
    };
    // The owner logged in from home once.
    let login = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", home)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    for ip in ["203.0.113.1", "203.0.113.2"] {
        assert_eq!(from(ip).await.unwrap().status(), 202);
    }
    assert_limited(from("203.0.113.3").await.unwrap(), "reset-account").await;
    // The owner, at home, still gets a link.
    assert_eq!(from(home).await.unwrap().status(), 202);
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_waits_out_a_mail_server_outage() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = crate::helpers::spawn_app_with(|s| {
        s.auth.smtp_url = secrecy::SecretString::from(format!("smtp://127.0.0.1:{port}"));
    })
    .await;
    let email = app.new_user().await;
    // Nothing listens: the worker tries, fails, and leaves the mail for later.
    let failed = format!(
        "mail_outbox WHERE recipient = '{email}' AND status = 'pending' AND attempts >= 1 \
         AND last_error IS NOT NULL"
    );
    for _ in 0..200 {
        if app.count(&failed).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count(&failed).await,
        1,
        "the failed attempt is recorded"
    );
    assert!(
        app.metrics()
            .await
            .contains("mail_send_failures_total{kind=\"verify_email\",permanent=\"false\"}")
    );
    // Meanwhile: a reset is asked for, then the password changed (by its owner, logged
    // in), then the address changed. None of it can be sent yet.
    let pair = app.login_ok(&email).await;
    let access = pair["access_token"].as_str().unwrap();
    request_reset(&app, &email).await;
    let resp = app
        .post_bearer(
            "/v1/users/me/password",
            access,
            Some(json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let new = unique_email();
    let resp = app
        .post_bearer(
            "/v1/users/me/email",
            access,
            Some(json!({"new_email": new, "current_password": NEW_PASSWORD})),
        )
        .await;
    assert_eq!(resp.status(), 202);

    // The server comes back; the retries (brought forward here, instead of waiting) go.
    let sink = MailSink::start_on(port).await;
    app.exec("UPDATE mail_outbox SET next_attempt_at = now()")
        .await;
    let mail = sink.wait_for_subject(&email, "Confirm your email", 1).await;
    let link = sink
        .wait_for_subject(&new, "Confirm your new email", 1)
        .await
        .token("verify-email");
    sink.wait_for_subject(&email, "password was changed", 1)
        .await;
    sink.wait_for_subject(&email, "being changed", 1).await;
    // The reset asked for before the password change is not sent: it would outlive it.
    for _ in 0..100 {
        if app.count("mail_outbox WHERE status = 'pending'").await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count("mail_outbox WHERE status = 'pending'").await, 0);
    assert!(sink.to(&email).iter().all(|m| !m.subject.contains("Reset")));
    assert_eq!(
        app.count("mail_outbox WHERE kind = 'password_reset' AND status = 'skipped'")
            .await,
        1
    );
    // The new address confirms; the old address's verification link is now worthless.
    assert_eq!(verify(&app, &link).await.status(), 204);
    assert_problem(
        verify(&app, &mail.token("verify-email")).await,
        400,
        "VERIFY_TOKEN_INVALID",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn login_can_require_a_verified_address() {
    let (app, sink) = spawn_app_with_mail(|s| s.auth.require_verified_email = true).await;
    let email = app.new_user().await;
    assert_problem(
        app.login(&email, "wrong wrong wrong").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_problem(app.login(&email, PASSWORD).await, 403, "EMAIL_NOT_VERIFIED").await;
    let token = sink
        .wait_for_subject(&email, "Confirm your email", 1)
        .await
        .token("verify-email");
    assert_eq!(verify(&app, &token).await.status(), 204);
    app.login_ok(&email).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_email_change_applies_when_the_new_address_confirms_it() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let access = pair["access_token"].as_str().unwrap();
    let change = |new: &str, password: &str| {
        app.post_bearer(
            "/v1/users/me/email",
            access,
            Some(json!({"new_email": new, "current_password": password})),
        )
    };
    let taken = app.new_user().await;
    let new = unique_email();
    assert_problem(
        change(&new, "wrong wrong wrong").await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_problem(change(&taken, PASSWORD).await, 409, "EMAIL_TAKEN").await;
    assert_eq!(change(&email, PASSWORD).await.status(), 422);
    assert_eq!(change(&new, PASSWORD).await.status(), 202);

    // The old address is told; the account keeps it until the new one confirms.
    let notice = sink.wait_for_subject(&email, "being changed", 1).await;
    assert!(notice.body.contains(&new), "{}", notice.body);
    assert_eq!(me(&app, access).await["email"], email.as_str());
    let token = sink
        .wait_for_subject(&new, "Confirm your new email", 1)
        .await
        .token("verify-email");
    assert_eq!(verify(&app, &token).await.status(), 204);
    let user = me(&app, access).await;
    assert_eq!(user["email"], new.as_str());
    assert_eq!(user["email_verified"], true);
    app.login_ok(&new).await;
    assert_problem(
        app.login(&email, PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(
        app.count("audit_log WHERE event = 'email_changed'").await,
        1
    );
    // The old address's verification link no longer proves anything.
    let old_link = sink
        .wait_for_subject(&email, "Confirm your email", 1)
        .await
        .token("verify-email");
    assert_problem(verify(&app, &old_link).await, 400, "VERIFY_TOKEN_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_account_cannot_use_its_reset_link() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let email = app.new_user().await;
    request_reset(&app, &email).await;
    let token = reset_mail(&sink, &email, 1).await;
    app.exec(&format!(
        "UPDATE users SET disabled = true WHERE email = '{email}'"
    ))
    .await;
    assert_problem(
        confirm_reset(&app, &token, NEW_PASSWORD).await,
        400,
        "RESET_TOKEN_INVALID",
    )
    .await;
    app.exec(&format!(
        "UPDATE users SET disabled = false WHERE email = '{email}'"
    ))
    .await;
    assert_problem(
        app.login(&email, NEW_PASSWORD).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn taking_the_account_back_ends_an_email_change_asked_for_before() {
    // Someone with the password asks to move the account to their address; the owner, told
    // at the old address, resets the password. The link to the new address is dead.
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let attacker = unique_email();
    let resp = app
        .post_bearer(
            "/v1/users/me/email",
            pair["access_token"].as_str().unwrap(),
            Some(json!({"new_email": attacker, "current_password": PASSWORD})),
        )
        .await;
    assert_eq!(resp.status(), 202);
    let link = sink
        .wait_for_subject(&attacker, "Confirm your new email", 1)
        .await
        .token("verify-email");
    sink.wait_for_subject(&email, "being changed", 1).await;
    request_reset(&app, &email).await;
    let reset = reset_mail(&sink, &email, 1).await;
    assert_eq!(
        confirm_reset(&app, &reset, NEW_PASSWORD).await.status(),
        204
    );
    assert_problem(verify(&app, &link).await, 400, "VERIFY_TOKEN_INVALID").await;
    let (status, fresh) = json(app.login(&email, NEW_PASSWORD).await).await;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(
        me(&app, fresh["access_token"].as_str().unwrap()).await["email"],
        email.as_str()
    );
}

/// An SMTP server that answers every command, each after `delay`: no step is slow enough
/// for lettre's own timeouts, the whole exchange is.
async fn slow_smtp(delay: Duration) -> u16 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                tokio::time::sleep(delay).await;
                if write.write_all(b"220 slow.test ESMTP\r\n").await.is_err() {
                    return;
                }
                let mut data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    if data && line != "." {
                        continue;
                    }
                    tokio::time::sleep(delay).await;
                    let reply: &[u8] = if data {
                        data = false;
                        b"250 queued\r\n"
                    } else if line.starts_with("EHLO") {
                        b"250 slow.test\r\n"
                    } else if line.starts_with("DATA") {
                        data = true;
                        b"354 go on\r\n"
                    } else if line.starts_with("QUIT") {
                        b"221 bye\r\n"
                    } else {
                        b"250 ok\r\n"
                    };
                    if write.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mail_server_that_answers_slowly_cannot_hold_the_worker() {
    // Each answer in 700 ms (lettre waits 30 s for each); six of them take over 4 s.
    let port = slow_smtp(Duration::from_millis(700)).await;
    let app = crate::helpers::spawn_app_with(|s| {
        s.auth.smtp_url = secrecy::SecretString::from(format!("smtp://127.0.0.1:{port}"));
        s.auth.mail_send_timeout_secs = 2;
    })
    .await;
    let email = app.new_user().await;
    let cut = format!(
        "mail_outbox WHERE recipient = '{email}' AND status = 'pending' AND attempts >= 1 \
         AND last_error = 'no answer within 2 s'"
    );
    let started = std::time::Instant::now();
    for _ in 0..200 {
        if app.count(&cut).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count(&cut).await,
        1,
        "the exchange was cut at its bound"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // Left for a retry, later: not sent, not given up.
    assert_eq!(
        app.count(&format!(
            "mail_outbox WHERE recipient = '{email}' AND next_attempt_at > now()"
        ))
        .await,
        1
    );
}
