//! Boots both services for real (the auth service issuing real tokens, the TODO service
//! verifying them through the JWKS and the Redis denylist) on random ports, each with a
//! fresh database and a unique Redis prefix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_service::config::{AuthSettings, Settings as AuthConfig};
use reqwest::{RequestBuilder, Response};
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::config::HttpSettings;
use shared::testing::{TestDatabase, fresh_database, json, redis_prefix};
use todo_service::config::{Settings as TodoConfig, TodoSettings};

pub use shared::testing::{PausableProxy, RedisServer, assert_problem};

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Stack {
    pub auth: String,
    pub todo: String,
    pub client: reqwest::Client,
    pub auth_state: Arc<auth_service::state::AppState>,
    pub todo_state: Arc<todo_service::state::AppState>,
    auth_stop: Option<tokio::sync::oneshot::Sender<()>>,
    todo_stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Last: dropped after the services are told to stop.
    pub auth_db: Arc<TestDatabase>,
    pub todo_db: Arc<TestDatabase>,
}

/// A logged-in user.
pub struct User {
    pub id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

pub async fn spawn_stack() -> Stack {
    spawn_stack_with(shared::testing::redis_url(), |_| {}).await
}

pub async fn spawn_stack_with(
    redis_url: String,
    configure: impl FnOnce(&mut TodoSettings),
) -> Stack {
    spawn_stack_on(redis_url.clone(), redis_url, configure).await
}

/// Both services, each reaching Redis at its own URL (one of them through a proxy, say).
pub async fn spawn_stack_on(
    auth_redis_url: String,
    redis_url: String,
    configure: impl FnOnce(&mut TodoSettings),
) -> Stack {
    let prefix = redis_prefix();
    let auth_db = fresh_database("auth", auth_service::startup::MIGRATIONS).await;
    let todo_db = fresh_database("todo", todo_service::startup::MIGRATIONS).await;
    let http = HttpSettings {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        ..HttpSettings::default()
    };
    let auth_settings = AuthConfig {
        http: http.clone(),
        auth: AuthSettings {
            database_url: SecretString::from(shared::testing::as_role(
                &auth_db,
                "auth_service_app",
            )),
            redis_url: SecretString::from(auth_redis_url),
            redis_prefix: prefix.clone(),
            key_encryption_key: SecretString::from("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            audit_hmac_key: SecretString::from("c2VhbHMgdGhlIGF1ZGl0IGNoYWluIGluIHRlc3RzISE="),
            database_pool_size: 8,
            ..AuthSettings::default()
        },
    };
    let auth_app = auth_service::startup::Application::build(auth_settings)
        .await
        .expect("auth app");
    let auth = format!("http://{}", auth_app.addr());
    let auth_state = auth_app.state();
    let (auth_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(auth_app.run_until(async {
        let _ = rx.await;
    }));

    let mut todo = TodoSettings {
        database_url: SecretString::from(todo_db.to_string()),
        redis_url: SecretString::from(redis_url.clone()),
        redis_prefix: prefix.clone(),
        jwks_url: format!("{auth}/.well-known/jwks.json"),
        database_pool_size: 8,
        ..TodoSettings::default()
    };
    configure(&mut todo);
    let (todo_base, todo_state, todo_stop) = spawn_todo(TodoConfig { http, todo }).await;
    let stack = Stack {
        auth,
        todo: todo_base,
        client: reqwest::Client::new(),
        auth_state,
        todo_state,
        auth_db,
        todo_db,
        auth_stop: Some(auth_stop),
        todo_stop: Some(todo_stop),
    };
    stack.wait_ready(&stack.todo).await;
    stack
}

/// Start a TODO service; returns its base URL, state and stop handle.
pub async fn spawn_todo(
    settings: TodoConfig,
) -> (
    String,
    Arc<todo_service::state::AppState>,
    tokio::sync::oneshot::Sender<()>,
) {
    settings.validate().expect("valid todo settings");
    let app = todo_service::startup::Application::build(settings)
        .await
        .expect("todo app");
    let base = format!("http://{}", app.addr());
    let state = app.state();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    (base, state, tx)
}

impl Stack {
    /// Wait until a TODO service's denylist is current and its keys are loaded.
    pub async fn wait_ready(&self, base: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let resp = self.client.get(format!("{base}/readyz")).send().await;
            if let Ok(resp) = resp {
                let (status, body) = json(resp).await;
                let all_up = body["checks"]
                    .as_array()
                    .is_some_and(|c| c.iter().all(|c| c["status"] == "up"));
                if status == 200 && all_up {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the TODO service did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stop the auth service (the TODO service must keep working without it).
    pub fn stop_auth(&mut self) {
        if let Some(stop) = self.auth_stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stop the TODO service (its state stays in PostgreSQL and Redis).
    pub fn stop_todo(&mut self) {
        if let Some(stop) = self.todo_stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn user(&self) -> User {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let resp = self
            .client
            .post(format!("{}/v1/auth/signup", self.auth))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let (status, user) = json(resp).await;
        assert_eq!(status, 201, "{user}");
        self.login(&email, user["id"].as_str().unwrap()).await
    }

    pub async fn login(&self, email: &str, id: &str) -> User {
        let resp = self
            .client
            .post(format!("{}/v1/auth/login", self.auth))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let (status, pair) = json(resp).await;
        assert_eq!(status, 200, "{pair}");
        User {
            id: id.to_owned(),
            email: email.to_owned(),
            access: pair["access_token"].as_str().unwrap().to_owned(),
            refresh: pair["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A user promoted to admin in the auth database, logged in afresh.
    pub async fn admin(&self) -> User {
        let user = self.user().await;
        use diesel_async::{AsyncConnection, RunQueryDsl};
        let mut conn = diesel_async::AsyncPgConnection::establish(&self.auth_db)
            .await
            .unwrap();
        diesel::sql_query(format!(
            "UPDATE users SET role = 'admin' WHERE id = '{}'",
            user.id
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        self.login(&user.email, &user.id).await
    }

    pub fn todo_url(&self, path: &str) -> String {
        format!("{}{path}", self.todo)
    }

    pub fn get(&self, user: &User, path: &str) -> RequestBuilder {
        self.client
            .get(self.todo_url(path))
            .bearer_auth(&user.access)
    }

    /// The status of a GET of `path` as `user`.
    pub async fn status(&self, user: &User, path: &str) -> u16 {
        self.get(user, path).send().await.unwrap().status().as_u16()
    }

    /// A GET of `path` with `token` as the bearer token.
    pub async fn get_with_token(&self, token: &str, path: &str) -> Response {
        self.client
            .get(self.todo_url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Assert that `user` may not GET `path` (403 `FORBIDDEN`).
    pub async fn assert_forbidden(&self, user: &User, path: &str) {
        assert_problem(self.get(user, path).send().await.unwrap(), 403, "FORBIDDEN").await;
    }

    /// Log `user` out at the auth service.
    pub async fn logout(&self, user: &User) {
        let status = self.auth_post(user, "/v1/auth/logout", None).await.status();
        assert_eq!(status, 204);
    }

    pub fn post(&self, user: &User, path: &str, body: &Value) -> RequestBuilder {
        self.client
            .post(self.todo_url(path))
            .bearer_auth(&user.access)
            .json(body)
    }

    pub fn patch(&self, user: &User, path: &str, body: &Value) -> RequestBuilder {
        self.client
            .patch(self.todo_url(path))
            .bearer_auth(&user.access)
            .json(body)
    }

    pub fn delete(&self, user: &User, path: &str) -> RequestBuilder {
        self.client
            .delete(self.todo_url(path))
            .bearer_auth(&user.access)
    }

    /// Create a todo; returns its JSON.
    pub async fn create(&self, user: &User, body: Value) -> Value {
        let (status, todo) = json(self.post(user, "/v1/todos", &body).send().await.unwrap()).await;
        assert_eq!(status, 201, "{todo}");
        todo
    }

    pub async fn auth_post(&self, user: &User, path: &str, body: Option<Value>) -> Response {
        let mut req = self
            .client
            .post(format!("{}{path}", self.auth))
            .bearer_auth(&user.access);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.unwrap()
    }

    /// How long until the TODO service refuses `user`'s token as revoked (panics after 3 s).
    pub async fn time_until_revoked(&self, user: &User, started: Instant) -> Duration {
        self.time_until_revoked_at(user, "/v1/todos", started).await
    }

    pub async fn time_until_revoked_at(
        &self,
        user: &User,
        path: &str,
        started: Instant,
    ) -> Duration {
        loop {
            let resp = self.get(user, path).send().await.unwrap();
            if resp.status() == 401 {
                assert_problem(resp, 401, "TOKEN_REVOKED").await;
                return started.elapsed();
            }
            assert_eq!(resp.status(), 200);
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "the token was never refused"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sign a token with the auth service's current key and arbitrary claims.
    pub fn sign(&self, claims: &shared::tokens::AccessClaims) -> String {
        let signer = self.auth_state.keys.signer().unwrap();
        let mut header = jsonwebtoken::Header::new(signer.alg.jwt());
        header.typ = Some("at+jwt".into());
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &signer.key).unwrap()
    }

    /// Claims like the auth service issues, for `sub`, with `scope`.
    pub fn claims_for(&self, sub: &str, role: &str, scope: &str) -> shared::tokens::AccessClaims {
        let now = chrono::Utc::now().timestamp();
        shared::tokens::AccessClaims {
            iss: "http://127.0.0.1:8080".into(),
            aud: shared::tokens::Audience::Many(vec!["todo-service".into()]),
            sub: sub.into(),
            exp: now + 600,
            iat: now,
            nbf: Some(now),
            jti: uuid::Uuid::now_v7().to_string(),
            sid: (role != "service").then(|| uuid::Uuid::now_v7().to_string()),
            role: role.into(),
            scope: scope.into(),
            client_id: None,
            email_verified: None,
            amr: None,
        }
    }
}
