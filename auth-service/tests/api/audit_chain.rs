//! The audit log is append-only for the service's role, and tampering breaks the chain.

use std::process::Command;

use crate::helpers::{TestApp, spawn_app};

/// The service binary with `args`, configured like `app`.
fn auth_command(app: &TestApp, args: &[&str]) -> Command {
    let s = &app.state.settings.auth;
    use secrecy::ExposeSecret;
    let mut command = Command::new(env!("CARGO_BIN_EXE_auth-service"));
    command
        .args(args)
        .env("AUTH_DATABASE_URL", s.database_url.expose_secret())
        .env("AUTH_REDIS_URL", s.redis_url.expose_secret())
        .env("AUTH_REDIS_PREFIX", &s.redis_prefix)
        .env(
            "AUTH_KEY_ENCRYPTION_KEY",
            s.key_encryption_key.expose_secret(),
        )
        .env("AUTH_AUDIT_HMAC_KEY", s.audit_hmac_key.expose_secret())
        .env("AUTH_LOG_LEVEL", "warn");
    command
}

fn auth_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    auth_command(app, args).output().expect("run auth-service")
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_passes_then_fails_after_a_row_is_altered_by_hand() {
    let app = spawn_app().await;
    app.user_session().await;
    app.user_session().await;

    let ok = auth_cli(&app, &["audit", "verify"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("intact: 4 rows"));

    // The service's role may not touch history at all.
    let as_app = shared::testing::as_role(&app.db_url, "auth_service_app");
    let mut conn = {
        use diesel_async::AsyncConnection;
        diesel_async::AsyncPgConnection::establish(&as_app)
            .await
            .unwrap()
    };
    use diesel_async::RunQueryDsl;
    // Nor the chain: only audit_chain() (the owner's rights) moves waiting events into
    // it, so the role can neither drop a waiting event nor hold the head.
    for sql in [
        "UPDATE audit_log SET event = 'x'",
        "DELETE FROM audit_log",
        "INSERT INTO audit_log (event, prev_hash, hash) VALUES ('forged', NULL, NULL)",
        "DELETE FROM audit_pending",
        "UPDATE audit_pending SET event = 'x'",
        "UPDATE audit_head SET hash = NULL",
        "SELECT hash FROM audit_head FOR UPDATE",
        "SELECT hash FROM audit_head FOR SHARE",
    ] {
        let denied = diesel::sql_query(sql).execute(&mut conn).await;
        assert!(
            denied
                .unwrap_err()
                .to_string()
                .contains("permission denied"),
            "{sql}"
        );
    }
    // Even the owner is stopped by the trigger...
    let mut owner = app.db().await;
    let blocked = diesel::sql_query("UPDATE audit_log SET event = 'x'")
        .execute(&mut owner)
        .await;
    assert!(blocked.unwrap_err().to_string().contains("append-only"));
    // ...unless it goes out of its way; then the chain shows it.
    tamper(
        &app,
        "UPDATE audit_log SET ip = '10.0.0.1' WHERE id = (SELECT min(id) + 1 FROM audit_log)",
    )
    .await;
    assert_verify_fails(&app, "the chain breaks at row");
}

/// Run `sql` as the database owner with the append-only triggers switched off.
async fn tamper(app: &TestApp, sql: &str) {
    use diesel_async::RunQueryDsl;
    let mut owner = app.db().await;
    for statement in ["SET session_replication_role = replica", sql] {
        diesel::sql_query(statement)
            .execute(&mut owner)
            .await
            .unwrap();
    }
}

fn assert_verify_fails(app: &TestApp, why: &str) {
    let out = auth_cli(app, &["audit", "verify"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("tampered") && stderr.contains(why),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_appends_keep_one_unbroken_chain() {
    let app = spawn_app().await;
    let sessions = (0..16).map(|_| app.user_session());
    let pairs = futures_util::future::join_all(sessions).await;
    // Refreshes append in the same statement as their writes: in flight together too.
    let refreshes = pairs
        .iter()
        .map(|(_, pair)| app.refresh(pair["refresh_token"].as_str().unwrap()));
    for resp in futures_util::future::join_all(refreshes).await {
        assert_eq!(resp.status(), 200);
    }
    let ok = auth_cli(&app, &["audit", "verify"]);
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains("intact: 48 rows"),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chainers_racing_writers_chain_every_event_once_in_one_chain() {
    use auth_service::store::audit_chain::chain_pending;
    let app = &spawn_app().await;
    let pairs = futures_util::future::join_all((0..16).map(|_| app.user_session())).await;
    app.chain_audit().await;
    let before = app.count("audit_log").await;
    // Refreshes write events while four chainers (besides the service's own) move small
    // batches, all in flight together.
    let done = std::sync::atomic::AtomicBool::new(false);
    let chainer = || async {
        let mut conn = app.db().await;
        let mut moved = 0;
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            moved += chain_pending(&mut conn, 1).await.unwrap();
            tokio::task::yield_now().await;
        }
        moved
    };
    let done = &done;
    let writers = async {
        let mut tokens: Vec<String> = pairs
            .iter()
            .map(|(_, pair)| pair["refresh_token"].as_str().unwrap().to_owned())
            .collect();
        for round in 0..5 {
            let refreshes = tokens.iter().map(|token| async move {
                let resp = app.refresh(token).await;
                assert_eq!(resp.status(), 200, "round {round}");
                let pair: serde_json::Value = resp.json().await.unwrap();
                pair["refresh_token"].as_str().unwrap().to_owned()
            });
            tokens = futures_util::future::join_all(refreshes).await;
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let ((), a, b, c, d) = tokio::join!(writers, chainer(), chainer(), chainer(), chainer());
    assert!(a + b + c + d > 0, "the racing chainers moved events");

    // 5 refreshes per user: every event once, none left waiting.
    assert_eq!(app.count("audit_log").await, before + 5 * 16);
    assert_eq!(app.count("audit_pending").await, 0);
    assert_eq!(
        app.count(
            "(SELECT request_id FROM audit_log GROUP BY request_id HAVING count(*) > 1) twice"
        )
        .await,
        0,
        "no event chained twice"
    );
    let ok = auth_cli(app, &["audit", "verify"]);
    assert!(
        String::from_utf8_lossy(&ok.stdout).contains(&format!("intact: {} rows", before + 80)),
        "{}{}",
        String::from_utf8_lossy(&ok.stdout),
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_event_written_with_a_content_that_is_not_its_own_breaks_the_chain() {
    let app = spawn_app().await;
    app.user_session().await;
    // The service's role writes an event whose hashed content says something else.
    let as_app = shared::testing::as_role(&app.db_url, "auth_service_app");
    let mut conn = {
        use diesel_async::AsyncConnection;
        diesel_async::AsyncPgConnection::establish(&as_app)
            .await
            .unwrap()
    };
    use diesel_async::RunQueryDsl;
    diesel::sql_query(
        "INSERT INTO audit_pending (occurred_at, event, details, content) \
         VALUES (now(), 'user_deleted', '{}', convert_to('[0,\"login_succeeded\"]', 'UTF8'))",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_verify_fails(&app, "the chain breaks at row");
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_notices_rows_removed_from_the_end() {
    let app = spawn_app().await;
    app.user_session().await;
    app.user_session().await;
    assert!(auth_cli(&app, &["audit", "verify"]).status.success());

    tamper(
        &app,
        "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)",
    )
    .await;
    assert_verify_fails(&app, "removed from the end");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rewritten_chain_is_caught_by_its_seals() {
    let app = spawn_app().await;
    app.user_session().await;
    app.user_session().await;
    // (The service seals every second too; this just does not wait for it.)
    auth_service::service::audit_seal::seal_once(&app.state, false)
        .await
        .unwrap();
    let out = auth_cli(&app, &["audit", "verify"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("4 rows verified, 4 of them sealed"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The owner rewrites a row and then the whole chain after it, and the head: every link
    // holds again, but the seals were made under a key the database never saw.
    rewrite_chain_from_second_row(&app).await;

    assert_verify_fails(&app, "seal of row");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_seal_is_noticed() {
    let app = spawn_app().await;
    app.user_session().await;
    auth_service::service::audit_seal::seal_once(&app.state, false)
        .await
        .unwrap();
    tamper(
        &app,
        "DELETE FROM audit_seals WHERE audit_id = (SELECT min(id) FROM audit_log)",
    )
    .await;
    assert_verify_fails(&app, "seal of row");
}

/// As the database owner: alter the second row, then recompute every hash after it and the
/// head, so that the plain chain holds again.
async fn rewrite_chain_from_second_row(app: &TestApp) {
    use auth_service::schema::audit_log;
    use auth_service::store::audit::AuditRow;
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    tamper(
        app,
        "UPDATE audit_log SET ip = '10.0.0.1' WHERE id = (SELECT min(id) + 1 FROM audit_log)",
    )
    .await;
    let mut owner = app.db().await;
    let rows: Vec<AuditRow> = audit_log::table
        .order(audit_log::id.asc())
        .select(AuditRow::as_select())
        .load(&mut owner)
        .await
        .unwrap();
    let mut prev: Option<Vec<u8>> = None;
    for row in &rows {
        let hash = auth_service::store::audit_chain::row_hash(prev.as_deref(), row);
        tamper(
            app,
            &format!(
                "UPDATE audit_log SET prev_hash = {}, hash = '\\x{}' WHERE id = {}",
                prev.as_ref()
                    .map_or("NULL".to_owned(), |p| format!("'\\x{}'", hex(p))),
                hex(&hash),
                row.id
            ),
        )
        .await;
        prev = Some(hash);
    }
    tamper(
        app,
        &format!(
            "UPDATE audit_head SET hash = '\\x{}'",
            hex(prev.as_ref().unwrap())
        ),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_emptied_of_its_hashes_is_noticed_by_its_seals() {
    let app = spawn_app().await;
    app.user_session().await;
    auth_service::service::audit_seal::seal_once(&app.state, false)
        .await
        .unwrap();
    tamper(&app, "UPDATE audit_log SET hash = NULL, prev_hash = NULL").await;
    tamper(&app, "UPDATE audit_head SET hash = NULL, prev = NULL").await;
    assert_verify_fails(&app, "seal of row");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_sealer_refuses_to_seal_a_rewritten_chain() {
    let app = spawn_app().await;
    app.user_session().await;
    app.user_session().await;
    // Let the service's own sealer seal the rows (it runs every second).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(app.count("audit_seals").await, 4);

    // The owner rewrites the chain and removes the seals from the second row on, hoping the
    // service seals the rewrite.
    rewrite_chain_from_second_row(&app).await;
    tamper(
        &app,
        "DELETE FROM audit_seals WHERE audit_id > (SELECT min(id) FROM audit_log)",
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

    assert_eq!(
        app.count("audit_seals").await,
        1,
        "nothing was sealed again"
    );
    assert!(
        crate::helpers::LOGS
            .contents()
            .contains("the audit chain changed below the last sealed row"),
        "the sealer says so"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn create_admin_creates_or_promotes_from_stdin_without_a_default_account() {
    let app = spawn_app().await;
    assert_eq!(app.count("users").await, 0, "no default account");
    let email = crate::helpers::unique_email();
    let run = |input: &'static str| {
        use std::io::Write;
        let mut child = auth_command(&app, &["create-admin", "--email", &email])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    let weak = run("password\n");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    assert_eq!(app.count("users").await, 0);

    let created = run("a sturdy admin passphrase\n");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(String::from_utf8_lossy(&created.stdout).contains("created admin"));
    let resp = app.login(&email, "a sturdy admin passphrase").await;
    let (_, pair) = crate::helpers::json(resp).await;
    assert_eq!(
        crate::helpers::claims(pair["access_token"].as_str().unwrap())["role"],
        "admin"
    );
    assert!(
        !String::from_utf8_lossy(&created.stdout).contains("sturdy"),
        "the password is never echoed"
    );

    let again = run("");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already an admin"));
    assert_eq!(
        app.count("audit_log WHERE event = 'admin_created'").await,
        1
    );
}
