//! The command line, driven through `auth_service::cli::run` as the binary drives it.

use crate::helpers::spawn_app;
use crate::oauth::{basic, client_credentials};

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_creates_lists_and_deletes_clients_through_the_library() {
    use auth_service::cli::{self, ClientCommand, Command};
    let app = spawn_app().await;
    let settings = || crate::helpers::test_settings(&app.database, &app.redis_prefix);
    let no_password = || anyhow::bail!("not asked");
    let mut out = Vec::new();
    let create = Command::Client {
        command: ClientCommand::Create {
            name: "reports".into(),
            scopes: vec!["todos:admin".into()],
        },
    };
    cli::run(create, settings(), no_password, &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    let id = printed
        .lines()
        .find_map(|l| l.strip_prefix("client_id="))
        .expect("the id is printed")
        .to_owned();
    let secret = printed
        .lines()
        .find_map(|l| l.strip_prefix("client_secret="))
        .expect("the secret is printed, once")
        .to_owned();
    let token = client_credentials(&app, None).await;
    assert_eq!(token.status(), 401, "no credentials, no token");
    let token = client_credentials(&app, Some(&basic(&id, &secret))).await;
    assert_eq!(token.status(), 200, "the printed secret works");

    let mut out = Vec::new();
    let list = Command::Client {
        command: ClientCommand::List,
    };
    cli::run(list, settings(), no_password, &mut out)
        .await
        .unwrap();
    let listed = String::from_utf8(out).unwrap();
    assert!(
        listed.contains(&id) && listed.contains("reports"),
        "{listed}"
    );
    assert!(!listed.contains(&secret), "the secret is never listed");

    let delete = Command::Client {
        command: ClientCommand::Delete {
            id: id.parse().unwrap(),
        },
    };
    cli::run(delete, settings(), no_password, &mut Vec::new())
        .await
        .unwrap();
    let mut out = Vec::new();
    let list = Command::Client {
        command: ClientCommand::List,
    };
    cli::run(list, settings(), no_password, &mut out)
        .await
        .unwrap();
    assert!(!String::from_utf8(out).unwrap().contains(&id), "deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_purges_ended_sessions_now_and_says_what_it_did() {
    use auth_service::cli::{self, Command};
    let app = spawn_app().await;
    let email = app.new_user().await;
    let ended = app.login_ok(&email).await;
    let live = app.login_ok(&email).await;
    let ended_id = ended["session_id"].as_str().unwrap();
    app.exec(&format!(
        "UPDATE sessions SET expires_at = now() - interval '2 days' WHERE id = '{ended_id}'"
    ))
    .await;
    let settings = crate::helpers::test_settings(&app.database, &app.redis_prefix);
    let mut out = Vec::new();
    cli::run(
        Command::Purge,
        settings,
        || anyhow::bail!("not asked"),
        &mut out,
    )
    .await
    .unwrap();

    let printed = String::from_utf8(out).unwrap();
    for line in [
        "refresh tokens of ended sessions: 1 rows deleted in 1 batches",
        "ended sessions: 1 rows deleted in 1 batches",
    ] {
        assert!(printed.lines().any(|l| l.starts_with(line)), "{printed}");
    }
    assert_eq!(
        app.count(&format!("sessions WHERE id = '{ended_id}'"))
            .await,
        0
    );
    let live_id = live["session_id"].as_str().unwrap();
    assert_eq!(
        app.count(&format!("sessions WHERE id = '{live_id}'")).await,
        1
    );
}
