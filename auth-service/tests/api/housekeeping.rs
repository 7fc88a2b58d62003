//! What keeps the tables bounded: the per-user session cap and the background purge.

use crate::helpers::{assert_problem, json, spawn_app_with};

#[tokio::test(flavor = "multi_thread")]
async fn a_login_beyond_the_session_cap_ends_the_oldest_sessions() {
    let app = spawn_app_with(|s| {
        s.auth.max_sessions_per_user = 3;
        s.auth.rate_login_account = shared::ratelimit::Rate::new(100, 60);
    })
    .await;
    let email = app.new_user().await;
    let mut pairs = Vec::new();
    for _ in 0..5 {
        pairs.push(app.login_ok(&email).await);
    }

    for old in &pairs[..2] {
        let at = old["access_token"].as_str().unwrap();
        assert_problem(app.get("/v1/users/me", at).await, 401, "TOKEN_REVOKED").await;
        let sid = old["session_id"].as_str().unwrap();
        assert!(app.denylisted(&format!("sid:{sid}")).await);
    }
    let newest = pairs[4]["access_token"].as_str().unwrap();
    let (status, page) = json(app.get("/v1/auth/sessions", newest).await).await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = pairs[2..]
        .iter()
        .rev()
        .map(|p| p["session_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, expected);
    for kept in &pairs[2..] {
        let (status, _) = json(app.refresh(kept["refresh_token"].as_str().unwrap()).await).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        app.count(
            "audit_log WHERE event = 'session_revoked' AND details->>'reason' = 'session_limit'"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_purge_deletes_only_what_can_no_longer_matter() {
    let app = spawn_app_with(|_| {}).await;
    let (_, first) = app.user_session().await;
    // A live session whose first refresh token was spent, and expired long ago.
    let spent = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, live) = json(app.refresh(&spent).await).await;
    assert_eq!(status, 200);
    let kept = live["session_id"].as_str().unwrap().to_owned();
    app.exec(&format!(
        "UPDATE refresh_tokens SET expires_at = now() - interval '2 days' \
         WHERE session_id = '{kept}' AND used_at IS NOT NULL"
    ))
    .await;
    let (_, revoked) = app.user_session().await;
    let at = revoked["access_token"].as_str().unwrap();
    assert_eq!(
        app.post_bearer("/v1/auth/logout", at, None).await.status(),
        204
    );
    // Age what the purge looks at: one session expired and one revoked two days ago, their
    // tokens long expired, a revocation past its expiry, an event published long ago.
    let dead = revoked["session_id"].as_str().unwrap();
    app.exec(&format!(
        "UPDATE sessions SET revoked_at = now() - interval '2 days' WHERE id = '{dead}'"
    ))
    .await;
    let (_, expired) = app.user_session().await;
    let gone = expired["session_id"].as_str().unwrap();
    app.exec(&format!(
        "UPDATE sessions SET expires_at = now() - interval '2 days' WHERE id = '{gone}'"
    ))
    .await;
    app.exec(&format!(
        "UPDATE refresh_tokens SET expires_at = now() - interval '2 days' \
         WHERE session_id IN ('{dead}', '{gone}')"
    ))
    .await;
    app.exec("UPDATE revocations SET expires_at = now() - interval '1 second'")
        .await;
    app.exec(
        "INSERT INTO outbox_events (kind, payload, published_at) VALUES \
         ('user_deleted', '{}', now() - interval '2 days'), ('user_deleted', '{}', NULL)",
    )
    .await;
    let audit_before = app.count("audit_log").await;

    let deleted = auth_service::service::purge::purge_once(&app.state).await;

    assert_eq!(app.count("sessions").await, 1);
    assert_eq!(app.count(&format!("sessions WHERE id = '{kept}'")).await, 1);
    assert_eq!(
        app.count("refresh_tokens").await,
        2,
        "a live session keeps its spent tokens"
    );
    assert_eq!(app.count("revocations").await, 0);
    assert_eq!(
        app.count("outbox_events").await,
        1,
        "the unpublished one stays"
    );
    assert_eq!(app.count("audit_log").await, audit_before, "never purged");
    assert_eq!(deleted, 2 + 2 + 1 + 1);
    let (status, _) = json(app.refresh(live["refresh_token"].as_str().unwrap()).await).await;
    assert_eq!(status, 200);
    // So presenting the long-spent one is still reuse, and ends the session.
    assert_problem(app.refresh(&spent).await, 401, "REFRESH_TOKEN_REUSED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purge_backlog_is_walked_once_in_batches_live_sessions_untouched() {
    use auth_service::service::purge::purge_tables;
    // No background pass beside this one (it would take some of the batches).
    let app = spawn_app_with(|s| s.auth.purge_interval_secs = 0).await;
    let (_, mine) = app.user_session().await;
    let user = format!(
        "(SELECT user_id FROM sessions WHERE id = '{}')",
        mine["session_id"].as_str().unwrap()
    );
    // 1,500 sessions that ended two days ago (every third revoked, the rest expired; ten at
    // a time end at the same second, so the walk's key ties on its time), between 500 live
    // ones, each with a token; one ended session has 1,200 more tokens, so its tokens span
    // two batches of 1,000.
    app.exec(&format!(
        "INSERT INTO sessions (id, user_id, last_used_at, expires_at, revoked_at, refresh_delivery) \
         SELECT gen_random_uuid(), {user}, now(), \
           CASE WHEN g % 4 = 0 THEN now() + interval '20 days' \
                WHEN g % 3 = 0 THEN now() + interval '5 days' \
                ELSE now() - interval '2 days' - (g / 10) * interval '1 second' END, \
           CASE WHEN g % 4 <> 0 AND g % 3 = 0 THEN now() - interval '2 days' - (g / 10) * interval '1 second' END, \
           'body' FROM generate_series(1, 2000) g"
    ))
    .await;
    app.exec(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, issued_at, expires_at) \
         SELECT gen_random_uuid(), id, sha256(id::text::bytea), now(), now() FROM sessions",
    )
    .await;
    app.exec(
        "INSERT INTO refresh_tokens (id, session_id, token_hash, issued_at, expires_at) \
         SELECT gen_random_uuid(), s.id, sha256((s.id::text || g)::bytea), now(), now() \
         FROM (SELECT id FROM sessions WHERE revoked_at IS NOT NULL ORDER BY id LIMIT 1) s, \
         generate_series(1, 1200) g",
    )
    .await;
    // Four more users' sessions refresh, five times each, while the purge runs.
    let mut chains = Vec::new();
    for _ in 0..4 {
        let (_, pair) = app.user_session().await;
        chains.push(pair["refresh_token"].as_str().unwrap().to_owned());
    }
    let ended = "sessions WHERE LEAST(expires_at, revoked_at) < now() - interval '1 day'";
    assert_eq!(app.count(ended).await, 1500);
    let live_before = app.count("sessions").await - 1500;
    let live_tokens = app.count("refresh_tokens").await - 1500 - 1200;

    let refreshing = chains.iter().map(|first| {
        let app = &app;
        async move {
            let mut token = first.clone();
            let mut statuses = Vec::new();
            for _ in 0..5 {
                let (status, body) = json(app.refresh(&token).await).await;
                statuses.push(status);
                if let Some(next) = body["refresh_token"].as_str() {
                    token = next.to_owned();
                }
            }
            statuses
        }
    });
    let (report, statuses) = tokio::join!(
        purge_tables(&app.state),
        futures_util::future::join_all(refreshing)
    );
    assert!(
        statuses.iter().flatten().all(|s| *s == 200),
        "every refresh beside the purge succeeds: {statuses:?}"
    );

    let of = |what: &str| {
        report
            .iter()
            .find(|t| t.what == what)
            .unwrap()
            .purged
            .clone()
            .unwrap()
    };
    let tokens = of("refresh tokens of ended sessions");
    assert_eq!((tokens.rows, tokens.batches), (2700, 3), "{tokens:?}");
    let sessions = of("ended sessions");
    assert_eq!((sessions.rows, sessions.batches), (1500, 2), "{sessions:?}");
    assert_eq!(app.count(ended).await, 0);
    assert_eq!(app.count("sessions").await, live_before);
    assert_eq!(
        app.count("refresh_tokens").await,
        live_tokens + 4 * 5,
        "live sessions keep every token, spent ones too"
    );
    // So each chain's first, long-spent token is still reuse.
    assert_problem(app.refresh(&chains[0]).await, 401, "REFRESH_TOKEN_REUSED").await;
    // The session this test logged in with is among the live ones, and still refreshes.
    let (status, _) = json(app.refresh(mine["refresh_token"].as_str().unwrap()).await).await;
    assert_eq!(status, 200);
}
