//! Helpers for the services' integration tests (feature `testing`): fresh databases, the
//! test Redis, and assertions on problem responses.

mod database;

use reqwest::{Response, StatusCode};
use serde_json::Value;

pub use database::{TestDatabase, fresh_database};

/// The admin URL of the test PostgreSQL (`TEST_DATABASE_URL`; `deploy/dev test` sets it).
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:55432/postgres".into())
}

/// The test Redis (`TEST_REDIS_URL`).
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:56379".into())
}

/// A unique Redis prefix, so parallel tests never see each other's keys.
pub fn redis_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// A response's status and JSON body (a string body when it is not JSON).
pub async fn json(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// Assert a problem+json response with `status` and `code`, carrying the request id and,
/// on 401, the bearer challenge; returns the body.
pub async fn assert_problem(resp: Response, status: u16, code: &str) -> Value {
    assert_eq!(
        resp.headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default()),
        Some(crate::problem::PROBLEM_JSON),
        "problem content type (status {})",
        resp.status()
    );
    let request_id = resp
        .headers()
        .get("x-request-id")
        .expect("x-request-id on errors")
        .to_str()
        .expect("ascii")
        .to_owned();
    if status == 401 {
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap_or_default()),
            Some(crate::problem::BEARER_CHALLENGE)
        );
    }
    let (got, body) = json(resp).await;
    assert_eq!(got.as_u16(), status, "status, body: {body}");
    assert_eq!(body["code"], code, "code, body: {body}");
    assert_eq!(body["status"], status);
    assert_eq!(body["request_id"], request_id.as_str());
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    body
}

/// The claims of a JWT, without verifying it.
pub fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

/// The header of a JWT, without verifying it.
pub fn jwt_header(token: &str) -> Value {
    jwt_part(token, 0)
}

fn jwt_part(token: &str, i: usize) -> Value {
    use base64::Engine;
    let raw = token.split('.').nth(i).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// The same database, connected as another role (trust authentication on the test
/// instance): services run as their restricted role, assertions as the owner.
pub fn as_role(database_url: &str, role: &str) -> String {
    match database_url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{role}@{host}")
        }
        None => database_url.to_owned(),
    }
}

/// The OpenAPI document in `resp`: a 200 whose JSON names no key twice in any object
/// (a strict client parser refuses repeated keys, which `Value` would silently collapse).
pub async fn openapi_document(resp: Response) -> Value {
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.expect("a body");
    assert_no_duplicate_keys(&text);
    serde_json::from_str(&text).expect("a JSON document")
}

/// The OpenAPI document a service serves (`resp`), checked: it documents `paths`, its bearer
/// scheme is `bearer`, and it equals the snapshot committed at `file` (see
/// [`assert_openapi_snapshot`]). Returns the document.
pub async fn assert_openapi_contract(
    resp: Response,
    paths: &[&str],
    file: &str,
    package: &str,
) -> Value {
    let spec = openapi_document(resp).await;
    let documented = spec["paths"].as_object().expect("paths");
    for path in paths {
        assert!(documented.contains_key(*path), "{path} is documented");
    }
    assert_eq!(
        spec["components"]["securitySchemes"]["BearerAuth"]["scheme"],
        "bearer"
    );
    assert_openapi_snapshot(&spec, file, package);
    spec
}

/// Compare an OpenAPI document with the snapshot committed at `file`; with
/// `UPDATE_OPENAPI=1` in the environment, write it first.
pub fn assert_openapi_snapshot(spec: &Value, file: &str, package: &str) {
    let rendered = serde_json::to_string_pretty(spec).expect("a JSON document") + "\n";
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(file, &rendered).expect("write the snapshot");
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        committed == rendered,
        "the OpenAPI document changed; review and run UPDATE_OPENAPI=1 cargo test -p {package} openapi"
    );
}

/// A Redis server of a test's own, to stop and restart (empty: no persistence).
pub struct RedisServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Start (again) on the same port, empty.
    pub async fn restart(&mut self) {
        self.stop();
        let bin = std::env::var("TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let port = self.port.to_string();
        let child = std::process::Command::new(bin)
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (TEST_REDIS_SERVER)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback TCP proxy to a server, which a test can pause: while paused, connections
/// stay open and no byte moves either way (a peer that hangs, or a network cut that has not
/// reset anything yet).
pub struct PausableProxy {
    pub port: u16,
    paused: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl PausableProxy {
    pub async fn start(target_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let paused = std::sync::Arc::new(tokio::sync::watch::channel(false).0);
        let flag = paused.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, flag.subscribe()));
                tokio::spawn(pipe(server_read, client_write, flag.subscribe()));
            }
        });
        Self { port, paused, task }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

impl Drop for PausableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Hold what was read until the proxy is resumed.
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Fails when any JSON object in `text` has a key twice (which `serde_json::Value` would
/// silently collapse, and a strict client parser would refuse), naming the key.
pub fn assert_no_duplicate_keys(text: &str) {
    use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

    struct Checked;
    impl<'de> Deserialize<'de> for Checked {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(CheckedVisitor)
        }
    }
    struct CheckedVisitor;
    impl<'de> Visitor<'de> for CheckedVisitor {
        type Value = Checked;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                map.next_value::<Checked>()?;
                if !seen.insert(key.clone()) {
                    return Err(A::Error::custom(format!("duplicate key {key:?}")));
                }
            }
            Ok(Checked)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
            while seq.next_element::<Checked>()?.is_some() {}
            Ok(Checked)
        }
        fn visit_bool<E: Error>(self, _: bool) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_i64<E: Error>(self, _: i64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_u64<E: Error>(self, _: u64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_f64<E: Error>(self, _: f64) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_str<E: Error>(self, _: &str) -> Result<Checked, E> {
            Ok(Checked)
        }
        fn visit_unit<E: Error>(self) -> Result<Checked, E> {
            Ok(Checked)
        }
    }
    if let Err(err) = serde_json::from_str::<Checked>(text) {
        panic!("the document has {err}");
    }
}

/// Fails unless `docs/configuration.md` lists exactly the settings of a service (its own
/// keys under `prefix`, and the shared HTTP keys).
pub fn assert_configuration_documented(prefix: &str, service_keys: &[&str]) {
    let doc = include_str!("../../../docs/configuration.md");
    let problems = crate::config::undocumented(doc, prefix, service_keys);
    assert!(problems.is_empty(), "docs/configuration.md: {problems:?}");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_repeated_key_anywhere_is_found() {
        super::assert_no_duplicate_keys(r#"{"a":{"400":1,"401":[{"x":null}]},"b":true}"#);
        let nested = std::panic::catch_unwind(|| {
            super::assert_no_duplicate_keys(r#"{"a":{"400":1,"401":[{"x":1,"x":2}]}}"#)
        });
        assert!(nested.is_err());
        let top = std::panic::catch_unwind(|| {
            super::assert_no_duplicate_keys(r#"{"responses":{"400":{},"400":{}}}"#)
        });
        assert!(top.is_err());
    }
}
