//! Boots the real service on a random port against a fresh PostgreSQL database and a
//! unique Redis prefix, and offers one typed helper per route.

use std::sync::{Arc, LazyLock};

use auth_service::config::{AuthSettings, Settings};
use auth_service::startup::{Application, MIGRATIONS};
use auth_service::state::AppState;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use reqwest::Response;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::config::{HttpSettings, LogFormat};
use shared::telemetry::CapturedLogs;
use shared::testing::{TestDatabase, fresh_database, redis_url};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";
pub const ORIGIN: &str = "https://app.example.com";

/// Every log line of every app in this test process.
pub static LOGS: LazyLock<CapturedLogs> = LazyLock::new(|| {
    let logs = CapturedLogs::default();
    shared::telemetry::init_with_writer(
        LogFormat::Json,
        "info,auth_service=debug,shared=debug",
        logs.clone(),
    );
    logs
});

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub db_url: String,
    pub redis_prefix: String,
    pub state: Arc<AppState>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// Last: dropped (when the last app on it ends) after the app is told to stop.
    pub database: Arc<TestDatabase>,
}

pub fn test_settings(db_url: &str, redis_prefix: &str) -> Settings {
    Settings {
        http: HttpSettings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            cors_allowed_origins: vec![ORIGIN.into()],
            ..HttpSettings::default()
        },
        auth: AuthSettings {
            // The service runs as its restricted role, as in production.
            database_url: SecretString::from(shared::testing::as_role(db_url, "auth_service_app")),
            redis_url: SecretString::from(redis_url()),
            redis_prefix: redis_prefix.to_owned(),
            key_encryption_key: SecretString::from("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            audit_hmac_key: SecretString::from("c2VhbHMgdGhlIGF1ZGl0IGNoYWluIGluIHRlc3RzISE="),
            database_pool_size: 8,
            ..AuthSettings::default()
        },
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    LazyLock::force(&LOGS);
    let database = fresh_database("auth", MIGRATIONS).await;
    let redis_prefix = shared::testing::redis_prefix();
    let mut settings = test_settings(&database, &redis_prefix);
    configure(&mut settings);
    spawn_on(settings, database, redis_prefix).await
}

pub async fn spawn_on(
    settings: Settings,
    database: Arc<TestDatabase>,
    redis_prefix: String,
) -> TestApp {
    settings.validate().expect("test settings are valid");
    let app = Application::build(settings).await.expect("build app");
    let base = format!("http://{}", app.addr());
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        base,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db_url: database.url().to_owned(),
        database,
        redis_prefix,
        state,
        _shutdown: tx,
    }
}

pub fn unique_email() -> String {
    format!("user-{}@example.com", Uuid::new_v4().simple())
}

pub use shared::testing::{assert_problem, json, jwt_claims as claims, jwt_header as header};

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/auth/signup",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// A new account; returns its email.
    pub async fn new_user(&self) -> String {
        let email = unique_email();
        let resp = self.signup(&email, PASSWORD).await;
        assert_eq!(resp.status(), 201, "signup: {}", resp.text().await.unwrap());
        email
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Log in with the refresh token delivered in a cookie.
    pub async fn login_with_cookie(&self, email: &str) -> Response {
        self.post_json(
            "/v1/auth/login",
            &json!({"email": email, "password": PASSWORD, "refresh_delivery": "cookie"}),
        )
        .await
    }

    /// The published JWKS.
    pub async fn jwks(&self) -> Value {
        let (status, body) = json(
            self.client
                .get(self.url("/.well-known/jwks.json"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "jwks: {body}");
        body
    }

    /// Log in with body delivery; returns the token pair.
    pub async fn login_ok(&self, email: &str) -> Value {
        let (status, body) = json(self.login(email, PASSWORD).await).await;
        assert_eq!(status, 200, "login: {body}");
        body
    }

    /// A new account, logged in.
    pub async fn user_session(&self) -> (String, Value) {
        let email = self.new_user().await;
        let pair = self.login_ok(&email).await;
        (email, pair)
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json("/v1/auth/refresh", &json!({"refresh_token": refresh_token}))
            .await
    }

    pub async fn get(&self, path: &str, access_token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_bearer(
        &self,
        path: &str,
        access_token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.post(self.url(path)).bearer_auth(access_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let resp = self.client.get(self.url("/metrics")).send().await.unwrap();
        resp.text().await.unwrap()
    }

    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db_url).await.unwrap()
    }

    /// Chain the audit events waiting in `audit_pending` (the service does within a
    /// second), so that `audit_log` holds every event of the requests made so far.
    pub async fn chain_audit(&self) {
        let mut conn = self.db().await;
        auth_service::store::audit_chain::chain_all(&mut conn, usize::MAX)
            .await
            .unwrap();
    }

    /// `SELECT count(*) FROM <from_where>`; of `audit_log`, after chaining what waits.
    pub async fn count(&self, from_where: &str) -> i64 {
        if from_where.contains("audit_log") {
            self.chain_audit().await;
        }
        let mut conn = self.db().await;
        diesel::select(diesel::dsl::sql::<BigInt>(&format!(
            "(SELECT count(*) FROM {from_where})"
        )))
        .get_result(&mut conn)
        .await
        .unwrap()
    }

    pub async fn exec(&self, sql: &str) {
        let mut conn = self.db().await;
        diesel::sql_query(sql).execute(&mut conn).await.unwrap();
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Whether the Redis denylist holds `member`.
    pub async fn denylisted(&self, member: &str) -> bool {
        let mut conn = self.redis().await;
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(format!("{}denylist", self.redis_prefix))
            .arg(member)
            .query_async(&mut conn)
            .await
            .unwrap();
        score.is_some()
    }
}
