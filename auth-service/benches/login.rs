//! Login throughput at production argon2id parameters against the machine's argon2 limit
//! (cores divided by one verification's time, measured in the same run), and the Redis
//! cost of a login.
//!
//! Needs the local PostgreSQL and Redis (`deploy/dev up`, or TEST_DATABASE_URL and
//! TEST_REDIS_URL), then: `cargo bench -p auth-service --bench login`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use auth_service::config::{AuthSettings, Settings};
use auth_service::crypto::hashing::{Engine, HashParams};
use auth_service::startup::{Application, MIGRATIONS};
use secrecy::SecretString;
use serde_json::json;
use shared::config::HttpSettings;
use shared::ratelimit::Rate;

const PASSWORD: &str = "correct horse battery staple";
const RUN: Duration = Duration::from_secs(15);

const PRODUCTION: HashParams = HashParams {
    memory_kib: 19 * 1024,
    iterations: 2,
    parallelism: 1,
};

fn production_hash() -> String {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    argon
        .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
        .unwrap()
        .to_string()
}

/// One argon2id verification, single-threaded, median of 30: `stock` with the `argon2`
/// crate's own `verify_password` (a fresh 19 MiB allocation each time), else with the
/// service's `Engine`, which keeps its working memory (the faster of the two).
fn verify_time(stock: bool) -> Duration {
    let hash = production_hash();
    let parsed = PasswordHash::new(&hash).unwrap();
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let engine = Engine::new(PRODUCTION).unwrap();
    let mut times: Vec<Duration> = (0..30)
        .map(|_| {
            let t = Instant::now();
            if stock {
                argon.verify_password(PASSWORD.as_bytes(), &parsed).unwrap();
            } else {
                assert!(engine.verify(PASSWORD.as_bytes(), &parsed));
            }
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// What `cores` threads verifying at once with the service's `Engine` achieve (memory
/// bandwidth is shared).
fn parallel_verifies_per_sec(cores: usize) -> f64 {
    let hash = production_hash();
    let engine = Engine::new(PRODUCTION).unwrap();
    let started = Instant::now();
    let count: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..cores)
            .map(|_| {
                scope.spawn(|| {
                    let parsed = PasswordHash::new(&hash).unwrap();
                    let mut n = 0;
                    while started.elapsed() < Duration::from_secs(5) {
                        assert!(engine.verify(PASSWORD.as_bytes(), &parsed));
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    count as f64 / started.elapsed().as_secs_f64()
}

async fn redis_commands(url: &str) -> u64 {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Logins per second with the given argon2 cost, and Redis commands per login.
async fn run_logins(memory_kib: u32, iterations: u32, cores: usize) -> (f64, f64, u64, f64) {
    let db_url = shared::testing::fresh_database("bench", MIGRATIONS).await;
    let redis_url = shared::testing::redis_url();
    let big = Rate::new(1_000_000, 60);
    let settings = Settings {
        http: HttpSettings {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            log_level: "warn".into(),
            ..HttpSettings::default()
        },
        auth: AuthSettings {
            database_url: SecretString::from(shared::testing::as_role(&db_url, "auth_service_app")),
            redis_url: SecretString::from(redis_url.clone()),
            redis_prefix: shared::testing::redis_prefix(),
            key_encryption_key: SecretString::from("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="),
            argon2_memory_kib: memory_kib,
            argon2_iterations: iterations,
            hash_concurrency: cores,
            hash_queue: 1024,
            rate_login_ip: big,
            rate_login_account: big,
            rate_signup_ip: big,
            ..AuthSettings::default()
        },
    };
    let app = Application::build(settings).await.unwrap();
    let base = format!("http://{}", app.addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let email = "bench@example.com";
    let resp = client
        .post(format!("{base}/v1/auth/signup"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);

    // Redis traffic with nothing happening (the background loops), to subtract.
    let idle_start = redis_commands(&redis_url).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_per_sec = (redis_commands(&redis_url).await - idle_start) as f64 / 3.0;

    let done = Arc::new(AtomicU64::new(0));
    let before = redis_commands(&redis_url).await;
    let started = Instant::now();
    let workers: Vec<_> = (0..cores * 3)
        .map(|_| {
            let (client, base, done) = (client.clone(), base.clone(), done.clone());
            tokio::spawn(async move {
                while started.elapsed() < RUN {
                    let resp = client
                        .post(format!("{base}/v1/auth/login"))
                        .json(&json!({"email": email, "password": PASSWORD}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(resp.status(), 200);
                    // Read the tokens, as a client does (and so the connection is reused).
                    resp.bytes().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let logins = done.load(Ordering::Relaxed);
    let commands = (redis_commands(&redis_url).await - before) as f64 - idle_per_sec * elapsed;
    let throughput = logins as f64 / elapsed;

    (throughput, commands / logins as f64, logins, elapsed)
}

#[tokio::main]
#[expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // `LOGIN_BENCH_OVERHEAD=1`: only the cheap-hash run, to profile what surrounds argon2.
    if std::env::var_os("LOGIN_BENCH_OVERHEAD").is_some() {
        let (overhead_only, _, logins, elapsed) = run_logins(1024, 1, cores).await;
        println!("with a trivial hash: {overhead_only:.0} logins/s ({logins} in {elapsed:.1} s)");
        return;
    }
    let t_stock = verify_time(true);
    let t_verify = verify_time(false);
    let stock_limit = cores as f64 / t_stock.as_secs_f64();
    let limit = cores as f64 / t_verify.as_secs_f64();
    let parallel = parallel_verifies_per_sec(cores);
    let (throughput, redis_per_login, logins, elapsed) = run_logins(19 * 1024, 2, cores).await;
    // The same with a trivially cheap hash: what the service costs around argon2.
    let (overhead_only, _, _, _) = run_logins(1024, 1, cores).await;

    println!("cores:                      {cores}");
    println!(
        "argon2id verify (m=19MiB, t=2, p=1), median: argon2 crate {:.1} ms, service engine {:.1} ms",
        t_stock.as_secs_f64() * 1000.0,
        t_verify.as_secs_f64() * 1000.0
    );
    println!(
        "argon2 limit (cores / verify): {stock_limit:.1} logins/s with the crate's verify, {limit:.1} with the engine's"
    );
    println!("argon2 alone on every core:  {parallel:.1} verifies/s");
    println!(
        "login throughput:            {throughput:.1} logins/s over {elapsed:.1} s ({logins} logins)"
    );
    println!(
        "throughput / limit:          {:.0} % of the crate-verify limit, {:.0} % of the engine limit",
        throughput / stock_limit * 100.0,
        throughput / limit * 100.0
    );
    println!(
        "throughput / argon2 alone:   {:.0} %",
        throughput / parallel * 100.0
    );
    println!("Redis commands per login:    {redis_per_login:.2}");
    println!(
        "with a trivial hash (m=1MiB, t=1): {overhead_only:.0} logins/s, so about {:.1} ms of CPU per login beyond argon2",
        cores as f64 * 1000.0 / overhead_only
    );
}
