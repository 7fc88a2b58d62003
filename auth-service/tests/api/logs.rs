//! Secrets never reach a log line.

use serde_json::json;

use crate::helpers::{LOGS, PASSWORD, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn no_password_hash_or_token_appears_in_the_logs() {
    let app = spawn_app().await;
    let (email, pair) = app.user_session().await;
    let at = pair["access_token"].as_str().unwrap().to_owned();
    let rt = pair["refresh_token"].as_str().unwrap().to_owned();
    let (_, next) = crate::helpers::json(app.refresh(&rt).await).await;
    app.refresh(&rt).await; // reuse, logged as a warning
    app.login(&email, "wrong password here").await;
    let new_password = "another secret passphrase";
    let (_, fresh) = crate::helpers::json(app.login(&email, PASSWORD).await).await;
    app.post_bearer(
        "/v1/users/me/password",
        fresh["access_token"].as_str().unwrap(),
        Some(json!({"current_password": PASSWORD, "new_password": new_password})),
    )
    .await;
    app.get("/v1/users/me", "garbage.token.value").await;
    let mut conn = app.db().await;
    let hash: String = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        auth_service::schema::users::table
            .select(auth_service::schema::users::password_hash)
            .first(&mut conn)
            .await
            .unwrap()
    };

    let logs = LOGS.contents();
    assert!(logs.contains("request"), "logs were captured");
    for secret in [
        PASSWORD,
        new_password,
        "wrong password here",
        &hash,
        &at,
        &rt,
        next["refresh_token"].as_str().unwrap(),
        fresh["access_token"].as_str().unwrap(),
        &email,
    ] {
        assert!(
            !logs.contains(secret),
            "a secret leaked into the logs: {secret}"
        );
    }
}
