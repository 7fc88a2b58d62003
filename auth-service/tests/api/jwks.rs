use crate::helpers::{header, json, spawn_app};

#[tokio::test(flavor = "multi_thread")]
async fn jwks_publishes_public_keys_with_cache_headers() {
    let app = spawn_app().await;

    let resp = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "public, max-age=300");
    let (_, jwks) = json(resp).await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert_eq!(key["use"], "sig");
    assert!(key["kid"].is_string());
    assert!(key.get("d").is_none(), "never the private part");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_keys_are_stored_encrypted() {
    let app = spawn_app().await;
    // PKCS#8 DER of an Ed25519 key starts with this header; encrypted bytes do not.
    let der_prefix = "\\x302e020100300506032b657004220420";
    assert_eq!(app.count("signing_keys").await, 1);
    assert_eq!(
        app.count(&format!(
            "signing_keys WHERE position('{der_prefix}'::bytea in private_key) > 0"
        ))
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_publishes_the_new_key_first_and_keeps_the_old_one() {
    let app = spawn_app().await;
    let (_, before) = app.user_session().await;
    let old_kid = header(before["access_token"].as_str().unwrap())["kid"].clone();
    let settings = &app.state.settings;
    let cipher = auth_service::startup::key_cipher(settings).unwrap();
    let horizon = auth_service::startup::token_horizon(settings);
    let mut conn = app.db().await;

    // A key that signs in an hour: published now, not used yet.
    let (pending, _) = auth_service::crypto::keyring::rotate(
        &mut conn,
        &cipher,
        auth_service::config::SigningAlg::ES256,
        chrono::Duration::hours(1),
        horizon,
    )
    .await
    .unwrap();
    app.state.keys.load(&mut conn).await.unwrap();
    let jwks = app.jwks().await;
    let kids: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert!(
        kids.contains(&old_kid) && kids.iter().any(|k| k == pending.as_str()),
        "{kids:?}"
    );
    let (_, still_old) = app.user_session().await;
    assert_eq!(
        header(still_old["access_token"].as_str().unwrap())["kid"],
        old_kid
    );

    // An immediate rotation: new tokens use it, old tokens stay valid.
    let (now_kid, _) = auth_service::crypto::keyring::rotate(
        &mut conn,
        &cipher,
        auth_service::config::SigningAlg::ES256,
        chrono::Duration::zero(),
        horizon,
    )
    .await
    .unwrap();
    app.state.keys.load(&mut conn).await.unwrap();
    let (_, after) = app.user_session().await;
    let h = header(after["access_token"].as_str().unwrap());
    assert_eq!(h["kid"], now_kid.as_str());
    assert_eq!(h["alg"], "ES256");
    assert_eq!(
        app.get("/v1/users/me", after["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.get("/v1/users/me", before["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}
