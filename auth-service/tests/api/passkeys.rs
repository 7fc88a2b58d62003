//! Passkeys: added with a recent login, then used without a password or as the second factor
//! of a password login; removed; refused when the answer is not the authenticator's own.
//! The authenticator here is a software one (P-256, attestation `none`), answering the
//! options the service sent as a browser would pass them on.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ciborium::Value as Cbor;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::admin::{admin_session, at, user_id};
use crate::helpers::{PASSWORD, TestApp, assert_problem, claims, json};
use crate::limits::generous;
use crate::mail_sink::{APP_URL, spawn_app_with_mail};

/// A platform authenticator holding one credential.
struct Authenticator {
    key: SigningKey,
    credential_id: Vec<u8>,
    user_handle: Vec<u8>,
    counter: u32,
    origin: String,
}

impl Authenticator {
    fn new() -> Self {
        Self {
            key: SigningKey::random(&mut rand::rngs::OsRng),
            credential_id: uuid::Uuid::new_v4().as_bytes().to_vec(),
            user_handle: Vec::new(),
            counter: 0,
            origin: APP_URL.to_owned(),
        }
    }

    fn client_data(&self, kind: &str, options: &Value) -> Vec<u8> {
        let challenge = options["publicKey"]["challenge"].as_str().unwrap();
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    fn auth_data(&self, rp_id: &str, flags: u8, attested: Option<Vec<u8>>) -> Vec<u8> {
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend_from_slice(&self.counter.to_be_bytes());
        if let Some(attested) = attested {
            data.extend_from_slice(&attested);
        }
        data
    }

    /// `navigator.credentials.create`: a new credential, user present and verified.
    fn create(&mut self, options: &Value) -> Value {
        let public_key = &options["publicKey"];
        let rp_id = public_key["rp"]["id"].as_str().unwrap();
        self.user_handle = B64
            .decode(public_key["user"]["id"].as_str().unwrap())
            .unwrap();
        let point = self.key.verifying_key().to_encoded_point(false);
        let mut cose = Vec::new();
        ciborium::into_writer(
            &Cbor::Map(vec![
                (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
                (Cbor::Integer(3.into()), Cbor::Integer((-7).into())),
                (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
                (
                    Cbor::Integer((-2).into()),
                    Cbor::Bytes(point.x().unwrap().to_vec()),
                ),
                (
                    Cbor::Integer((-3).into()),
                    Cbor::Bytes(point.y().unwrap().to_vec()),
                ),
            ]),
            &mut cose,
        )
        .unwrap();
        let mut attested = vec![0u8; 16]; // AAGUID
        attested.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        attested.extend_from_slice(&self.credential_id);
        attested.extend_from_slice(&cose);
        // UP | UV | AT
        let auth_data = self.auth_data(rp_id, 0x01 | 0x04 | 0x40, Some(attested));
        let mut attestation = Vec::new();
        ciborium::into_writer(
            &Cbor::Map(vec![
                (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
                (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
                (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
            ]),
            &mut attestation,
        )
        .unwrap();
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "attestationObject": B64.encode(attestation),
                "clientDataJSON": B64.encode(self.client_data("webauthn.create", options)),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
    }

    /// `navigator.credentials.get`: an assertion over the options' challenge.
    fn get(&mut self, options: &Value, rp_id: &str) -> Value {
        self.counter += 1;
        let auth_data = self.auth_data(rp_id, 0x01 | 0x04, None);
        let client_data = self.client_data("webauthn.get", options);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: DerSignature = self.key.sign(&signed);
        let id = B64.encode(&self.credential_id);
        json!({
            "id": id,
            "rawId": id,
            "type": "public-key",
            "response": {
                "authenticatorData": B64.encode(auth_data),
                "clientDataJSON": B64.encode(client_data),
                "signature": B64.encode(signature.as_bytes()),
                "userHandle": B64.encode(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
    }
}

const RP_ID: &str = "app.example.com";

async fn delete_passkey(
    app: &TestApp,
    access: &str,
    id: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut req = app
        .client
        .delete(app.url(&format!("/v1/users/me/passkeys/{id}")))
        .bearer_auth(access);
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

/// Begin adding a passkey with the current password.
async fn register_start(app: &TestApp, access: &str) -> reqwest::Response {
    register_start_with(app, access, PASSWORD).await
}

async fn register_start_with(app: &TestApp, access: &str, password: &str) -> reqwest::Response {
    app.post_bearer(
        "/v1/users/me/passkeys/register/start",
        access,
        Some(json!({ "current_password": password })),
    )
    .await
}

/// Add a passkey held by `authenticator`; the finish's body.
async fn add(app: &TestApp, access: &str, authenticator: &mut Authenticator, name: &str) -> Value {
    add_with(app, access, authenticator, name, PASSWORD).await
}

async fn add_with(
    app: &TestApp,
    access: &str,
    authenticator: &mut Authenticator,
    name: &str,
    password: &str,
) -> Value {
    let (status, started) = json(register_start_with(app, access, password).await).await;
    assert_eq!(status, 200, "{started}");
    let credential = authenticator.create(&started["options"]);
    let (status, body) = json(
        app.post_bearer(
            "/v1/users/me/passkeys/register/finish",
            access,
            Some(json!({
                "challenge_id": started["challenge_id"],
                "name": name,
                "credential": credential,
            })),
        )
        .await,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

/// A passwordless login with `authenticator`, start to finish.
async fn passwordless(app: &TestApp, authenticator: &mut Authenticator) -> reqwest::Response {
    let started = login_start(app, json!({})).await;
    login_finish(app, &started, authenticator.get(&started["options"], RP_ID)).await
}

async fn login_start(app: &TestApp, body: Value) -> Value {
    let (status, started) = json(app.post_json("/v1/auth/passkey/start", &body).await).await;
    assert_eq!(status, 200, "{started}");
    started
}

async fn login_finish(app: &TestApp, started: &Value, credential: Value) -> reqwest::Response {
    app.post_json(
        "/v1/auth/passkey/finish",
        &json!({ "challenge_id": started["challenge_id"], "credential": credential }),
    )
    .await
}

async fn passkeys_of(app: &TestApp, access: &str) -> Vec<Value> {
    let (status, body) = json(app.get("/v1/users/me/passkeys", access).await).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_added_logs_in_without_a_password() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let other = app.login_ok(&email).await;
    let access = at(&pair);
    let mut authenticator = Authenticator::new();

    // The options name this site, the user by id, and ask for user verification and a
    // discoverable credential.
    let (status, started) = json(register_start(&app, access).await).await;
    assert_eq!(status, 200, "{started}");
    let options = &started["options"]["publicKey"];
    assert_eq!(options["rp"]["id"], RP_ID);
    let uid = user_id(&app, &pair).await;
    assert_eq!(
        B64.decode(options["user"]["id"].as_str().unwrap()).unwrap(),
        uuid::Uuid::parse_str(&uid).unwrap().as_bytes()
    );
    assert_eq!(
        options["authenticatorSelection"]["userVerification"],
        "required"
    );
    assert_eq!(
        options["authenticatorSelection"]["residentKey"],
        "preferred"
    );
    let credential = authenticator.create(&started["options"]);
    let finish = |credential: Value, challenge: Value| {
        let app = &app;
        async move {
            app.post_bearer(
                "/v1/users/me/passkeys/register/finish",
                access,
                Some(json!({ "challenge_id": challenge, "name": "Laptop", "credential": credential })),
            )
            .await
        }
    };
    // Not JSON of a credential: 422, and the ceremony is still to be had.
    let bad = finish(json!({"id": 1}), started["challenge_id"].clone()).await;
    assert_eq!(bad.status(), 422);
    let (status, body) =
        json(finish(credential.clone(), started["challenge_id"].clone()).await).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["passkey"]["name"], "Laptop");
    assert_eq!(body["passkey"]["last_used_at"], Value::Null);
    assert_eq!(body["recovery_codes"].as_array().unwrap().len(), 10);
    // The ceremony is spent.
    assert_eq!(
        finish(credential, started["challenge_id"].clone())
            .await
            .status(),
        422
    );
    // The factor is on; the other session ended; the owner is told.
    let (_, me) = json(app.get("/v1/users/me", access).await).await;
    assert_eq!(me["mfa_enabled"], true);
    assert_problem(
        app.refresh(other["refresh_token"].as_str().unwrap()).await,
        401,
        "REFRESH_TOKEN_INVALID",
    )
    .await;
    sink.wait_for_subject(&email, "sign-in settings changed", 1)
        .await;
    assert_eq!(
        app.count("audit_log WHERE event = 'passkey_added'").await,
        1
    );

    // Passwordless: no user named, any passkey of this site.
    let started = login_start(&app, json!({})).await;
    assert_eq!(
        started["options"]["publicKey"]["allowCredentials"],
        json!([])
    );
    let assertion = authenticator.get(&started["options"], RP_ID);
    let (status, tokens) = json(login_finish(&app, &started, assertion.clone()).await).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(claims(at(&tokens))["amr"], json!(["pop", "mfa"]));
    assert_eq!(claims(at(&tokens))["sub"], uid.as_str());
    assert!(tokens["refresh_token"].is_string());
    // The same answer again: the ceremony is spent; in a new ceremony it proves nothing.
    assert_problem(
        login_finish(&app, &started, assertion.clone()).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let fresh = login_start(&app, json!({})).await;
    assert_problem(
        login_finish(&app, &fresh, assertion).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    // One ceremony answered six times at once: exactly one login.
    let started = login_start(&app, json!({})).await;
    let assertion = authenticator.get(&started["options"], RP_ID);
    let answers = futures_util::future::join_all(
        (0..6).map(|_| login_finish(&app, &started, assertion.clone())),
    )
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401, 401, 401, 401, 401]);
    let keys = passkeys_of(&app, at(&tokens)).await;
    assert_eq!(keys.len(), 1);
    assert!(keys[0]["last_used_at"].is_string(), "{keys:?}");

    // A password login now asks for the second factor, and says a passkey will do.
    let (status, body) = json(app.login(&email, PASSWORD).await).await;
    assert_eq!(status, 200);
    assert_eq!(body["methods"], json!(["passkey", "recovery_code"]));

    // Cookie delivery, as an SPA asks for it.
    let started = login_start(&app, json!({ "refresh_delivery": "cookie" })).await;
    let resp = login_finish(
        &app,
        &started,
        authenticator.get(&started["options"], RP_ID),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let (_, body) = json(resp).await;
    assert!(body.get("refresh_token").is_none() || body["refresh_token"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_answers_a_password_logins_challenge_of_its_own_user_only() {
    let (app, _sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let mut mine = Authenticator::new();
    add(&app, at(&pair), &mut mine, "Phone").await;
    let (_, theirs_pair) = app.user_session().await;
    let mut theirs = Authenticator::new();
    add(&app, at(&theirs_pair), &mut theirs, "Other").await;

    let (_, body) = json(app.login(&email, PASSWORD).await).await;
    let mfa_token = body["mfa_token"].as_str().unwrap().to_owned();
    let started = login_start(&app, json!({ "mfa_token": mfa_token })).await;
    // Only this user's passkey is asked for.
    let allowed = started["options"]["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0]["id"], B64.encode(&mine.credential_id));
    // Another user's passkey does not answer it.
    assert_problem(
        login_finish(&app, &started, theirs.get(&started["options"], RP_ID)).await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    let started = login_start(&app, json!({ "mfa_token": mfa_token })).await;
    let (status, tokens) =
        json(login_finish(&app, &started, mine.get(&started["options"], RP_ID)).await).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(claims(at(&tokens))["amr"], json!(["pwd", "pop", "mfa"]));
    // The challenge is spent.
    assert_problem(
        app.post_json("/v1/auth/passkey/start", &json!({ "mfa_token": mfa_token }))
            .await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    assert_problem(
        app.post_json("/v1/auth/passkey/start", &json!({ "mfa_token": "nope" }))
            .await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_that_are_not_the_authenticators_own_are_refused() {
    let (app, _sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let access = at(&pair);

    // Another origin (a phishing site) cannot register one.
    let mut phished = Authenticator::new();
    phished.origin = "https://app.example.com.evil.test".into();
    let (_, started) = json(register_start(&app, access).await).await;
    let credential = phished.create(&started["options"]);
    let resp = app
        .post_bearer(
            "/v1/users/me/passkeys/register/finish",
            access,
            Some(json!({ "challenge_id": started["challenge_id"], "credential": credential })),
        )
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(app.count("passkeys").await, 0);

    let mut authenticator = Authenticator::new();
    add(&app, access, &mut authenticator, "Key").await;
    // Nor use it there.
    let started = login_start(&app, json!({})).await;
    authenticator.origin = "https://evil.test".into();
    assert_problem(
        login_finish(
            &app,
            &started,
            authenticator.get(&started["options"], RP_ID),
        )
        .await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    authenticator.origin = APP_URL.into();
    // A key that is not the registered one, claiming its credential id.
    let mut forger = Authenticator::new();
    forger.credential_id = authenticator.credential_id.clone();
    forger.user_handle = authenticator.user_handle.clone();
    let started = login_start(&app, json!({})).await;
    assert_problem(
        login_finish(&app, &started, forger.get(&started["options"], RP_ID)).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    // A copy of the authenticator whose counter went back (a clone).
    let ok = passwordless(&app, &mut authenticator).await;
    assert_eq!(ok.status(), 200);
    authenticator.counter -= 1;
    assert_problem(
        passwordless(&app, &mut authenticator).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    // A clone answering a second-factor ceremony begun before the original moved the
    // counter: refused (the counter stored now is what counts, not the ceremony's copy).
    let mut clone = Authenticator {
        key: authenticator.key.clone(),
        credential_id: authenticator.credential_id.clone(),
        user_handle: authenticator.user_handle.clone(),
        counter: authenticator.counter,
        origin: APP_URL.into(),
    };
    let (_, body) = json(app.login(&email, PASSWORD).await).await;
    let stale = login_start(&app, json!({ "mfa_token": body["mfa_token"] })).await;
    let ok = passwordless(&app, &mut authenticator).await;
    assert_eq!(ok.status(), 200);
    assert_problem(
        login_finish(&app, &stale, clone.get(&stale["options"], RP_ID)).await,
        401,
        "MFA_CODE_INVALID",
    )
    .await;
    // Wrong passwords sprayed at the account lock the password (here, for this address),
    // never the owner's passkey.
    for _ in 0..6 {
        let resp = app.login(&email, "not the password at all").await;
        assert!(matches!(resp.status().as_u16(), 401 | 429));
    }
    assert_problem(app.login(&email, PASSWORD).await, 429, "RATE_LIMITED").await;
    let ok = passwordless(&app, &mut authenticator).await;
    assert_eq!(ok.status(), 200);
    // Unknown ceremonies and malformed answers.
    assert_problem(
        app.post_json(
            "/v1/auth/passkey/finish",
            &json!({ "challenge_id": uuid::Uuid::new_v4(), "credential": authenticator.get(&started["options"], RP_ID) }),
        )
        .await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let started = login_start(&app, json!({})).await;
    let resp = login_finish(&app, &started, json!({"rawId": "!!"})).await;
    assert_eq!(resp.status(), 422);
    // Failures are audited, and lock nobody out: the owner still logs in.
    assert!(
        app.count("audit_log WHERE event = 'login_failed' AND details->>'method' = 'passkey'")
            .await
            >= 3
    );
    let started = login_start(&app, json!({})).await;
    authenticator.counter += 5;
    let ok = login_finish(
        &app,
        &started,
        authenticator.get(&started["options"], RP_ID),
    )
    .await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_and_removing_need_the_password_and_removing_the_last_turns_the_factor_off() {
    let (app, sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let access = at(&pair);
    let mut authenticator = Authenticator::new();
    add(&app, access, &mut authenticator, "Laptop").await;
    // A second passkey: no new recovery codes (the first one's are unused).
    let mut second = Authenticator::new();
    let body = add(&app, access, &mut second, "Phone").await;
    assert_eq!(body["recovery_codes"], Value::Null);
    let (_, status) = json(app.get("/v1/users/me/mfa", access).await).await;
    assert_eq!(
        status,
        json!({ "totp": false, "passkeys": 2, "recovery_codes_left": 10 })
    );
    // The same authenticator twice: excluded in the options, refused if it answers anyway.
    let (_, started) = json(register_start(&app, access).await).await;
    let excluded = started["options"]["publicKey"]["excludeCredentials"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(excluded, 2);
    let credential = authenticator.create(&started["options"]);
    let finish = |access: String, started: Value, credential: Value| {
        let app = &app;
        async move {
            app.post_bearer(
                "/v1/users/me/passkeys/register/finish",
                &access,
                Some(json!({ "challenge_id": started["challenge_id"], "credential": credential })),
            )
            .await
        }
    };
    assert_eq!(
        finish(access.to_owned(), started, credential)
            .await
            .status(),
        422
    );
    // A credential id registered to someone else is not taken over.
    let (_, other) = app.user_session().await;
    let mut copy = Authenticator::new();
    copy.credential_id = authenticator.credential_id.clone();
    let (_, started) = json(register_start(&app, at(&other)).await).await;
    let credential = copy.create(&started["options"]);
    assert_problem(
        finish(at(&other).to_owned(), started, credential).await,
        409,
        "CONFLICT",
    )
    .await;

    // The password is always asked for, even right after a login (a passkey logs in on its
    // own: a session token alone must not add one), and a wrong one is a failed login.
    let no_password = app
        .post_bearer("/v1/users/me/passkeys/register/start", access, None)
        .await;
    assert_eq!(no_password.status(), 422);
    assert_problem(
        app.post_bearer(
            "/v1/users/me/passkeys/register/start",
            access,
            Some(json!({ "current_password": "wrong wrong wrong" })),
        )
        .await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(
        app.count("audit_log WHERE event = 'reauth_failed'").await,
        1
    );
    let keys = passkeys_of(&app, access).await;
    assert_eq!(keys.len(), 2);
    let first = keys[0]["id"].as_str().unwrap().to_owned();
    let last = keys[1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        delete_passkey(&app, access, &first, None).await.status(),
        422
    );
    assert_problem(
        delete_passkey(
            &app,
            access,
            &first,
            Some(json!({"current_password": "wrong wrong wrong"})),
        )
        .await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    // Someone else's passkey id is not found.
    let (_, stranger) = app.user_session().await;
    let password = Some(json!({ "current_password": PASSWORD }));
    assert_problem(
        delete_passkey(&app, at(&stranger), &first, password.clone()).await,
        404,
        "NOT_FOUND",
    )
    .await;
    assert_eq!(
        delete_passkey(&app, access, &first, password.clone())
            .await
            .status(),
        204
    );
    // A removed passkey logs in no more.
    assert_problem(
        passwordless(&app, &mut authenticator).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
    let (_, me) = json(app.get("/v1/users/me", access).await).await;
    assert_eq!(me["mfa_enabled"], true);
    assert_eq!(
        delete_passkey(&app, access, &last, password).await.status(),
        204
    );
    let (_, me) = json(app.get("/v1/users/me", access).await).await;
    assert_eq!(me["mfa_enabled"], false);
    assert_eq!(
        app.count(&format!(
            "mfa_recovery_codes WHERE user_id = '{}'",
            me["id"].as_str().unwrap()
        ))
        .await,
        0
    );
    // Login asks for no second factor again.
    let tokens = app.login_ok(&email).await;
    assert!(tokens["access_token"].is_string());
    assert_eq!(
        app.count("audit_log WHERE event = 'passkey_removed'").await,
        2
    );
    sink.wait_for_subject(&email, "sign-in settings changed", 4)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_while_a_ceremony_is_open_voids_it() {
    let (app, _sink) = spawn_app_with_mail(generous).await;
    let (email, pair) = app.user_session().await;
    let access = at(&pair);
    let mut authenticator = Authenticator::new();
    // A registration begun before the password changed cannot finish after.
    let (_, started) = json(register_start(&app, access).await).await;
    let credential = authenticator.create(&started["options"]);
    let (status, _) = json(
        app.post_bearer(
            "/v1/users/me/password",
            access,
            Some(json!({ "current_password": PASSWORD, "new_password": "another long passphrase 42" })),
        )
        .await,
    )
    .await;
    assert!(status.is_success(), "{status}");
    let fresh = app.login(&email, "another long passphrase 42").await;
    let (_, fresh) = json(fresh).await;
    let resp = app
        .post_bearer(
            "/v1/users/me/passkeys/register/finish",
            at(&fresh),
            Some(json!({ "challenge_id": started["challenge_id"], "credential": credential })),
        )
        .await;
    assert_eq!(resp.status(), 422);
    assert_eq!(app.count("passkeys").await, 0);

    // An admin's reset of the factors removes passkeys too.
    add_with(
        &app,
        at(&fresh),
        &mut authenticator,
        "Laptop",
        "another long passphrase 42",
    )
    .await;
    let (_, admin) = admin_session(&app).await;
    let id = user_id(&app, &fresh).await;
    let resp = app
        .client
        .delete(app.url(&format!("/v1/admin/users/{id}/mfa")))
        .bearer_auth(at(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(app.count("passkeys").await, 0);
    assert_problem(
        passwordless(&app, &mut authenticator).await,
        401,
        "INVALID_CREDENTIALS",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_recovery_codes_of_a_passkey_only_account_are_capped_and_told() {
    let (app, sink) = spawn_app_with_mail(crate::mfa::wide_open).await;
    let (email, pair) = app.user_session().await;
    let mut authenticator = Authenticator::new();
    let body = add(&app, at(&pair), &mut authenticator, "Laptop").await;
    let good = body["recovery_codes"][0].as_str().unwrap().to_owned();
    let wrong = "aaaa-bbbb-cccc-dddd";
    let mut refused = 0;
    while refused < 10 {
        let (_, challenge) = json(app.login(&email, PASSWORD).await).await;
        let token = challenge["mfa_token"].as_str().unwrap().to_owned();
        for _ in 0..5 {
            if refused == 10 {
                break;
            }
            let resp = app
                .post_json(
                    "/v1/auth/mfa",
                    &json!({ "mfa_token": token, "code": wrong }),
                )
                .await;
            assert_eq!(resp.status(), 401);
            refused += 1;
        }
    }
    // The third wrong one told the owner; after ten, even a good code waits for the day.
    sink.wait_for_subject(&email, "Someone tried to log in", 1)
        .await;
    let (_, challenge) = json(app.login(&email, PASSWORD).await).await;
    assert_problem(
        app.post_json(
            "/v1/auth/mfa",
            &json!({ "mfa_token": challenge["mfa_token"], "code": good }),
        )
        .await,
        429,
        "RATE_LIMITED",
    )
    .await;
    // The passkey is not a code: it still logs in.
    let ok = passwordless(&app, &mut authenticator).await;
    assert_eq!(ok.status(), 200);
    // An admin's reset of the factors (the user lost them) also clears the day's count: the
    // user can set up an app again at once.
    let (_, admin) = admin_session(&app).await;
    let id = user_id(&app, &pair).await;
    let resp = app
        .client
        .delete(app.url(&format!("/v1/admin/users/{id}/mfa")))
        .bearer_auth(at(&admin))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        app.count(&format!("mfa_failures WHERE user_id = '{id}'"))
            .await,
        0
    );
}
