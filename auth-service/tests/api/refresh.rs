use serde_json::json;

use crate::helpers::{ORIGIN, assert_problem, json, spawn_app, spawn_app_with};

#[tokio::test(flavor = "multi_thread")]
async fn refresh_rotates_the_token_within_the_session() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let old = pair["refresh_token"].as_str().unwrap();

    let (status, next) = json(app.refresh(old).await).await;

    assert_eq!(status, 200, "{next}");
    assert_eq!(next["session_id"], pair["session_id"]);
    assert_ne!(next["refresh_token"], pair["refresh_token"]);
    assert_ne!(next["access_token"], pair["access_token"]);
    let at = next["access_token"].as_str().unwrap();
    assert_eq!(app.get("/v1/users/me", at).await.status(), 200);
    // The database never holds a usable token: only hashes, linked parent to child.
    assert_eq!(app.count("refresh_tokens").await, 2);
    assert_eq!(
        app.count(&format!(
            "refresh_tokens WHERE token_hash = convert_to('{old}', 'UTF8')"
        ))
        .await,
        0
    );
    assert_eq!(
        app.count("refresh_tokens WHERE parent_id IS NOT NULL AND used_at IS NULL")
            .await,
        1
    );
    assert_eq!(app.count("audit_log WHERE event = 'refresh'").await, 1);
    // The successor's parent is the spent token; the session was used just now.
    assert_eq!(
        app.count(
            "refresh_tokens c JOIN refresh_tokens p ON c.parent_id = p.id \
             WHERE p.used_at IS NOT NULL AND c.used_at IS NULL AND c.session_id = p.session_id"
        )
        .await,
        1
    );
    assert_eq!(
        app.count("sessions WHERE last_used_at > created_at").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_with_a_spent_token_revokes_the_whole_session() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let first = pair["refresh_token"].as_str().unwrap();
    let (_, second) = json(app.refresh(first).await).await;

    let reuse = app.refresh(first).await;

    assert_problem(reuse, 401, "REFRESH_TOKEN_REUSED").await;
    // The legitimate successor dies with the session, and so do its access tokens.
    let successor = app.refresh(second["refresh_token"].as_str().unwrap()).await;
    assert_problem(successor, 401, "REFRESH_TOKEN_INVALID").await;
    let me = app
        .get("/v1/users/me", second["access_token"].as_str().unwrap())
        .await;
    assert_problem(me, 401, "TOKEN_REVOKED").await;
    assert_eq!(app.count("sessions WHERE revoked_at IS NOT NULL").await, 1);
    assert_eq!(
        app.count("audit_log WHERE event = 'refresh_reuse_detected'")
            .await,
        1
    );
    let sid = pair["session_id"].as_str().unwrap();
    assert!(
        app.denylisted(&format!("sid:{sid}")).await,
        "revocation reached Redis"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_twenty_concurrent_refreshes_exactly_one_wins() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let token = pair["refresh_token"].as_str().unwrap();

    let attempts = (0..20).map(|_| app.refresh(token));
    let responses = futures_util::future::join_all(attempts).await;

    let mut ok = 0;
    for resp in responses {
        match resp.status().as_u16() {
            200 => ok += 1,
            401 => {
                let body = assert_problem(resp, 401, "REFRESH_TOKEN_REUSED").await;
                assert_eq!(body["status"], 401);
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(
        app.count("refresh_tokens").await,
        2,
        "exactly one successor was minted"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_malformed_and_revoked_tokens_are_invalid() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    for token in ["nope", "", &"x".repeat(600)] {
        let resp = app
            .post_json("/v1/auth/refresh", &json!({"refresh_token": token}))
            .await;
        assert_problem(resp, 401, "REFRESH_TOKEN_INVALID").await;
    }
    let at = pair["access_token"].as_str().unwrap();
    assert_eq!(
        app.post_bearer("/v1/auth/logout", at, None).await.status(),
        204
    );
    let resp = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    assert_problem(resp, 401, "REFRESH_TOKEN_INVALID").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_and_absolute_session_lifetimes_end_refresh() {
    let app = spawn_app_with(|s| {
        s.auth.session_idle_ttl_secs = 3600;
        s.auth.session_absolute_ttl_secs = 7200;
    })
    .await;
    let (_, idle) = app.user_session().await;
    let (_, old) = app.user_session().await;
    app.exec(&format!(
        "UPDATE sessions SET last_used_at = now() - interval '2 hours' WHERE id = '{}'",
        idle["session_id"].as_str().unwrap()
    ))
    .await;
    app.exec(&format!(
        "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = '{}'",
        old["session_id"].as_str().unwrap()
    ))
    .await;

    for pair in [idle, old] {
        let resp = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
        assert_problem(resp, 401, "REFRESH_TOKEN_INVALID").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_user_cannot_refresh() {
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    app.exec("UPDATE users SET disabled = true").await;
    let resp = app.refresh(pair["refresh_token"].as_str().unwrap()).await;
    assert_problem(resp, 401, "REFRESH_TOKEN_INVALID").await;
}

async fn cookie_login(app: &crate::helpers::TestApp) -> String {
    let email = app.new_user().await;
    let resp = app.login_with_cookie(&email).await;
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_refresh_from_an_allowed_origin_rotates_the_cookie() {
    let app = spawn_app().await;
    let cookie = cookie_login(&app).await;

    let resp = app
        .client
        .post(app.url("/v1/auth/refresh"))
        .header("cookie", &cookie)
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    let next = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(next.contains("HttpOnly") && next.contains("SameSite=Strict"));
    assert_ne!(next.split(';').next().unwrap(), cookie);
    let (_, body) = json(resp).await;
    assert!(
        body.get("refresh_token").is_none(),
        "delivered the way it came: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cookie_refresh_without_an_allowed_origin_is_csrf_failed() {
    let app = spawn_app().await;
    let cookie = cookie_login(&app).await;

    for origin in [None, Some("https://evil.example.com"), Some("null")] {
        let mut req = app
            .client
            .post(app.url("/v1/auth/refresh"))
            .header("cookie", &cookie);
        if let Some(origin) = origin {
            req = req.header("origin", origin);
        }
        assert_problem(req.send().await.unwrap(), 403, "CSRF_FAILED").await;
    }
    // Nothing was spent.
    assert_eq!(
        app.count("refresh_tokens WHERE used_at IS NOT NULL").await,
        0
    );
}

/// The usual refresh is one statement: all of it, or nothing, and nothing for a token
/// that is spent, of another session, or of a revoked session (those go the long way,
/// which tells reuse from the rest).
#[tokio::test(flavor = "multi_thread")]
async fn the_one_statement_refresh_writes_everything_or_nothing() {
    use auth_service::crypto::tokens::hash_token;
    use auth_service::domain::RequestMeta;
    use auth_service::store::audit::{AuditEntry, event};
    use auth_service::store::sessions::{QuickRotation, rotate_quick};
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let (_, other) = app.user_session().await;
    let session_id: uuid::Uuid = pair["session_id"].as_str().unwrap().parse().unwrap();
    let meta = RequestMeta {
        ip: "127.0.0.1".into(),
        ip_key: "127.0.0.1".into(),
        user_agent: None,
        request_id: "quick".into(),
    };
    let entry = AuditEntry {
        event: event::REFRESH,
        actor_id: None,
        subject_id: None,
        session_id: Some(session_id),
        meta: &meta,
        details: json!({}),
    };
    let mut conn = app.db().await;
    // Presents `presented`, with `successor` as the next token's hash.
    let rotate =
        async |conn: &mut diesel_async::AsyncPgConnection, presented: &[u8], successor: &[u8]| {
            let rotation = QuickRotation {
                session_id,
                presented_hash: presented,
                successor_id: uuid::Uuid::now_v7(),
                successor_hash: successor,
                at: chrono::Utc::now(),
                idle: chrono::Duration::days(14),
            };
            rotate_quick(conn, &rotation, &entry).await.unwrap()
        };
    let tokens = format!("refresh_tokens WHERE session_id = '{session_id}'");
    let unspent = format!("{tokens} AND used_at IS NULL");
    // Counted in the chain after chaining what waits: the service's own chainer may move a
    // waiting event at any moment, so counting `audit_pending` alone raced it.
    let events = "audit_log WHERE request_id = 'quick'";
    let first = hash_token(pair["refresh_token"].as_str().unwrap());
    let second = hash_token("the second token");
    let third = hash_token("the third token");

    // Another session's token, presented for this session: nothing.
    let foreign = hash_token(other["refresh_token"].as_str().unwrap());
    assert!(rotate(&mut conn, &foreign, &second).await.is_none());
    assert_eq!((app.count(&tokens).await, app.count(events).await), (1, 0));

    // The usual case: spent, successor written, event recorded, the session's user back.
    let (user, expires, _amr) = rotate(&mut conn, &first, &second).await.expect("rotated");
    let owner = format!(
        "sessions WHERE id = '{session_id}' AND user_id = '{}'",
        user.id
    );
    assert_eq!(app.count(&owner).await, 1);
    assert!(expires > chrono::Utc::now());
    assert_eq!(
        (app.count(&tokens).await, app.count(&unspent).await),
        (2, 1)
    );
    assert_eq!(app.count(events).await, 1);

    // Spent now: nothing more.
    assert!(rotate(&mut conn, &first, &third).await.is_none());
    assert_eq!((app.count(&tokens).await, app.count(events).await), (2, 1));

    // The successor, once its session is revoked: nothing, and it stays unspent.
    app.exec(&format!(
        "UPDATE sessions SET revoked_at = now() WHERE id = '{session_id}'"
    ))
    .await;
    assert!(rotate(&mut conn, &second, &third).await.is_none());
    assert_eq!(
        (app.count(&tokens).await, app.count(&unspent).await),
        (2, 1)
    );
    assert_eq!(app.count(events).await, 1);
}

/// A refresh that arrives while a revocation of its session is being written (a demotion,
/// a password change elsewhere, disabling) waits for it, and is refused once it commits:
/// no successor, no access token with what the change took away.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_waiting_on_a_revocation_of_its_session_is_refused_when_it_commits() {
    use diesel_async::RunQueryDsl;
    let app = spawn_app().await;
    let (_, pair) = app.user_session().await;
    let session_id = pair["session_id"].as_str().unwrap();
    let token = pair["refresh_token"].as_str().unwrap();
    let mut revoker = app.db().await;
    for sql in [
        "BEGIN".to_owned(),
        format!(
            "UPDATE sessions SET revoked_at = now(), revoked_reason = 'role_changed' \
             WHERE id = '{session_id}'"
        ),
    ] {
        diesel::sql_query(sql).execute(&mut revoker).await.unwrap();
    }

    let commit_later = async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        diesel::sql_query("COMMIT")
            .execute(&mut revoker)
            .await
            .unwrap();
    };
    let (resp, ()) = tokio::join!(app.refresh(token), commit_later);

    assert_problem(resp, 401, "REFRESH_TOKEN_INVALID").await;
    assert_eq!(
        app.count(&format!("refresh_tokens WHERE session_id = '{session_id}'"))
            .await,
        1,
        "no successor"
    );
}
