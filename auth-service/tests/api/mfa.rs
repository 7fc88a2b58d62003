//! A second factor: TOTP enrolment, login with a challenge, single-use codes, recovery
//! codes, removal, and an admin's reset. Codes are computed here from the otpauth URI, as
//! an authenticator app would.

use base64::Engine;
use serde_json::{Value, json};
use totp_rs::TOTP;

use crate::admin::{admin_session, at, user_id};
use crate::helpers::{PASSWORD, TestApp, assert_problem, claims, json};
use crate::limits::generous;
use crate::mail_sink::spawn_app_with_mail;

/// The code an app shows `offset` steps from now.
fn code(totp: &TOTP, offset: i64) -> String {
    let now = chrono::Utc::now().timestamp() + offset * 30;
    totp.generate(now as u64)
}

/// Enrol, with the current password or (`None`) on the strength of a recent login.
async fn enrol(app: &TestApp, access: &str, password: Option<&str>) -> reqwest::Response {
    app.post_bearer(
        "/v1/users/me/mfa/totp",
        access,
        password.map(|p| json!({ "current_password": p })),
    )
    .await
}

/// Enrol and confirm an authenticator for a logged-in user: its TOTP and recovery codes.
async fn enable(app: &TestApp, access: &str) -> (TOTP, Vec<String>) {
    let (status, enrolment) = json(enrol(app, access, None).await).await;
    assert_eq!(status, 200, "{enrolment}");
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    let totp = TOTP::from_url(uri).expect("an otpauth URI");
    let (status, body) = json(
        app.post_bearer(
            "/v1/users/me/mfa/totp/confirm",
            access,
            Some(json!({ "code": code(&totp, 0) })),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let codes = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    (totp, codes)
}

async fn login_challenge(app: &TestApp, email: &str) -> String {
    let resp = app.login(email, PASSWORD).await;
    assert!(resp.headers().get("set-cookie").is_none());
    let (status, body) = json(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(body.get("access_token").is_none() && body.get("refresh_token").is_none());
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    body["mfa_token"].as_str().unwrap().to_owned()
}

async fn complete(app: &TestApp, mfa_token: &str, code: &str) -> reqwest::Response {
    app.post_json(
        "/v1/auth/mfa",
        &json!({ "mfa_token": mfa_token, "code": code }),
    )
    .await
}

async fn complete_ok(app: &TestApp, mfa_token: &str, code: &str) -> Value {
    let (status, pair) = json(complete(app, mfa_token, code).await).await;
    assert_eq!(status, 200, "{pair}");
    pair
}

#[tokio::test(flavor = "multi_thread")]
async fn enrolment_shows_the_secret_once_and_a_first_code_turns_it_on() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let other = app.login_ok(&email).await;
    let access = at(&pair);
    // An access token of a session opened long ago (stolen, say) cannot enrol alone: a
    // recent login or the password is asked for.
    app.exec(&format!(
        "UPDATE sessions SET created_at = now() - interval '1 hour' WHERE id = '{}'",
        pair["session_id"].as_str().unwrap()
    ))
    .await;
    assert_problem(enrol(&app, access, None).await, 403, "FORBIDDEN").await;
    assert_problem(
        enrol(&app, access, Some("wrong wrong wrong")).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    // A wrong password there counts as a failed login, audited.
    assert_eq!(
        app.count("audit_log WHERE event = 'reauth_failed'").await,
        1
    );
    let (status, enrolment) = json(enrol(&app, access, Some(PASSWORD)).await).await;
    assert_eq!(status, 200);
    let uri = enrolment["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(enrolment["qr_png"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let totp = TOTP::from_url(uri).unwrap();
    // The secret is stored sealed, not as given.
    assert_eq!(
        app.count(&format!(
            "mfa_totp WHERE position('\\x{}'::bytea IN secret) > 0",
            totp.secret
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ))
        .await,
        0
    );
    // Not on until confirmed; a wrong code confirms nothing.
    let (_, me) = json(app.get("/v1/users/me", access).await).await;
    assert_eq!(me["mfa_enabled"], false);
    let wrong = app
        .post_bearer(
            "/v1/users/me/mfa/totp/confirm",
            access,
            Some(json!({"code": "000000"})),
        )
        .await;
    assert_eq!(wrong.status(), 422);
    let (status, body) = json(
        app.post_bearer(
            "/v1/users/me/mfa/totp/confirm",
            access,
            Some(json!({ "code": code(&totp, 0) })),
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let codes = body["recovery_codes"].as_array().unwrap();
    assert_eq!(codes.len(), 10);
    let (_, me) = json(app.get("/v1/users/me", access).await).await;
    assert_eq!(me["mfa_enabled"], true);
    // The other session ended; this one stays. Enrolling again is refused.
    assert_problem(
        app.refresh(other["refresh_token"].as_str().unwrap()).await,
        401,
        "REFRESH_TOKEN_INVALID",
    )
    .await;
    assert_problem(enrol(&app, access, Some(PASSWORD)).await, 409, "CONFLICT").await;
    sink.wait_for_subject(&email, "sign-in settings changed", 1)
        .await;
    assert_eq!(app.count("audit_log WHERE event = 'mfa_enabled'").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_asks_for_a_code_and_each_code_is_good_once() {
    let (app, _sink) = spawn_app_with_mail(wide_open).await;
    let (email, pair) = app.user_session().await;
    let (totp, recovery) = enable(&app, at(&pair)).await;

    let challenge = login_challenge(&app, &email).await;
    assert_problem(
        complete(&app, &challenge, "123456").await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    // The confirm took the current step: the next one is good (an app a step ahead).
    let next = code(&totp, 1);
    let tokens = complete_ok(&app, &challenge, &next).await;
    assert_eq!(claims(at(&tokens))["amr"], json!(["pwd", "otp", "mfa"]));
    // Refreshed tokens say the same.
    let (status, refreshed) =
        json(app.refresh(tokens["refresh_token"].as_str().unwrap()).await).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(claims(at(&refreshed))["amr"], json!(["pwd", "otp", "mfa"]));
    // The challenge is spent (even with a good recovery code); the code too, in another
    // login.
    assert_problem(
        complete(&app, &challenge, &recovery[1]).await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    let again = login_challenge(&app, &email).await;
    assert_problem(complete(&app, &again, &next).await, 401, "MFA_CODE_INVALID").await;
    // A recovery code works once, and says so in `amr`.
    let tokens = complete_ok(&app, &again, &recovery[0].to_uppercase()).await;
    assert_eq!(claims(at(&tokens))["amr"], json!(["pwd", "mfa"]));
    let third = login_challenge(&app, &email).await;
    assert_problem(
        complete(&app, &third, &recovery[0]).await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    // A challenge takes five codes at most, then not even the right one.
    for _ in 0..4 {
        assert_problem(
            complete(&app, &third, "000000").await,
            401,
            "MFA_CODE_INVALID",
        )
        .await;
    }
    assert_problem(
        complete(&app, &third, &recovery[1]).await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    assert_problem(
        complete(&app, "no-such-challenge", &recovery[1]).await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    // The recovery code tried on spent challenges was not spent.
    let fourth = login_challenge(&app, &email).await;
    let tokens = complete_ok(&app, &fourth, &recovery[1]).await;
    assert_eq!(claims(at(&tokens))["amr"], json!(["pwd", "mfa"]));
}

/// Rates and brute-force throttling out of the way: what is tested is the second factor's
/// own cap.
pub fn wide_open(s: &mut auth_service::config::Settings) {
    generous(s);
    s.auth.throttle_ip_failures = 1000;
    s.auth.throttle_account_failures = 1000;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_takes_ten_wrong_codes_a_day_until_its_password_changes() {
    let (app, sink) = spawn_app_with_mail(wide_open).await;
    let (email, pair) = app.user_session().await;
    let (totp, _) = enable(&app, at(&pair)).await;
    for _ in 0..2 {
        let challenge = login_challenge(&app, &email).await;
        for _ in 0..5 {
            assert_problem(
                complete(&app, &challenge, "000000").await,
                401,
                "MFA_CODE_INVALID",
            )
            .await;
        }
    }
    // The owner was told after the third (someone has the password), once.
    let warned = sink
        .wait_for_subject(&email, "Someone tried to log in", 1)
        .await;
    assert!(warned.body.contains("your password"), "{}", warned.body);
    // Ten wrong: not even the right code is tried now, from anywhere.
    let challenge = login_challenge(&app, &email).await;
    assert_problem(
        complete(&app, &challenge, &code(&totp, 1)).await,
        429,
        "RATE_LIMITED",
    )
    .await;
    // The owner changes the password (the intruder knew it): codes are tried again.
    let resp = app
        .post_bearer(
            "/v1/users/me/password",
            at(&pair),
            Some(
                json!({"current_password": PASSWORD, "new_password": "another fine passphrase 9"}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 204);
    let (status, body) = json(app.login(&email, "another fine passphrase 9").await).await;
    assert_eq!(status, 200, "{body}");
    let tokens = complete_ok(&app, body["mfa_token"].as_str().unwrap(), &code(&totp, 1)).await;
    assert_eq!(claims(at(&tokens))["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(
        sink.to(&email)
            .iter()
            .filter(|m| m.subject.contains("Someone tried"))
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_logins_completed_at_once_with_one_code_one_wins() {
    let (app, _sink) = spawn_app_with_mail(wide_open).await;
    let (email, pair) = app.user_session().await;
    let (totp, _) = enable(&app, at(&pair)).await;
    let first = login_challenge(&app, &email).await;
    let second = login_challenge(&app, &email).await;
    let next = code(&totp, 1);
    let (a, b) = tokio::join!(
        complete(&app, &first, &next),
        complete(&app, &second, &next)
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_while_the_code_is_awaited_voids_the_challenge() {
    let (app, _sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let (totp, _) = enable(&app, at(&pair)).await;
    let challenge = login_challenge(&app, &email).await;
    let resp = app
        .post_bearer(
            "/v1/users/me/password",
            at(&pair),
            Some(
                json!({"current_password": PASSWORD, "new_password": "another fine passphrase 9"}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_problem(
        complete(&app, &challenge, &code(&totp, 1)).await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn removal_needs_a_fresh_code_and_an_admin_can_reset_factors() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let (totp, recovery) = enable(&app, at(&pair)).await;
    let remove = |code: String| {
        app.client
            .delete(app.url("/v1/users/me/mfa/totp"))
            .bearer_auth(at(&pair))
            .json(&json!({ "code": code }))
            .send()
    };
    // The confirming code is spent.
    assert_eq!(remove(code(&totp, -1)).await.unwrap().status(), 422);
    assert_eq!(remove(recovery[2].clone()).await.unwrap().status(), 204);
    let (_, me) = json(app.get("/v1/users/me", at(&pair)).await).await;
    assert_eq!(me["mfa_enabled"], false);
    let tokens = app.login_ok(&email).await;
    assert_eq!(claims(at(&tokens))["amr"], json!(["pwd"]));
    sink.wait_for_subject(&email, "sign-in settings changed", 2)
        .await;

    // Enrolled again, then reset by an admin: every session of the user ends.
    let (_totp, _) = enable(&app, at(&tokens)).await;
    let (_, admin) = admin_session(&app).await;
    let id = user_id(&app, &tokens).await;
    let resp = app
        .client
        .delete(app.url(&format!("/v1/admin/users/{id}/mfa")))
        .bearer_auth(at(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_problem(
        app.get("/v1/users/me", at(&tokens)).await,
        401,
        "TOKEN_REVOKED",
    )
    .await;
    let fresh = app.login_ok(&email).await;
    let (_, me) = json(app.get("/v1/users/me", at(&fresh)).await).await;
    assert_eq!(me["mfa_enabled"], false);
    assert_eq!(app.count("audit_log WHERE event = 'mfa_reset'").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_codes_at_removal_count_against_the_same_cap() {
    let (app, _sink) = spawn_app_with_mail(wide_open).await;
    let (_, pair) = app.user_session().await;
    let (totp, _) = enable(&app, at(&pair)).await;
    let remove = |code: String| {
        app.client
            .delete(app.url("/v1/users/me/mfa/totp"))
            .bearer_auth(at(&pair))
            .json(&json!({ "code": code }))
            .send()
    };
    for _ in 0..10 {
        assert_eq!(remove("000000".into()).await.unwrap().status(), 422);
    }
    // A stolen session has had its ten guesses: not even the right code now.
    assert_problem(remove(code(&totp, 1)).await.unwrap(), 429, "RATE_LIMITED").await;
}
