//! Login throughput at production argon2id parameters against the machine's argon2 limit
//! (cores divided by one verification's time, measured in the same run), against what
//! argon2 alone achieves on every core at once (the most any service could reach here), and
//! the Redis cost of a login.
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
const EMAIL: &str = "bench@example.com";
const ROUNDS: usize = 5;
/// Each round interleaves its measurements in slices, so that the machine's drift (shared
/// hardware: the speed of one verification here varies by a third from minute to minute)
/// reaches the limits and the logins alike.
const SLICES: usize = 8;
const SLICE_LOGINS: Duration = Duration::from_millis(1200);
const SLICE_PARALLEL: Duration = Duration::from_millis(300);
const SLICE_SINGLE: usize = 6;

const PRODUCTION: HashParams = HashParams {
    memory_kib: 19 * 1024,
    iterations: 2,
    parallelism: 1,
};

/// argon2id alone, timed the two ways the limit is taken: one verification at a time (with
/// the `argon2` crate's own `verify_password`, which allocates 19 MiB each time, or with the
/// service's `Engine`, which keeps its working memory and is the faster of the two), and
/// `cores` verifications at once with nothing else running.
struct Argon2Alone {
    hash: String,
    stock: argon2::Argon2<'static>,
    engine: Engine,
}

impl Argon2Alone {
    fn new(cores: usize) -> Self {
        let p = PRODUCTION;
        let params = argon2::Params::new(p.memory_kib, p.iterations, p.parallelism, None).unwrap();
        let stock =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = stock
            .hash_password(PASSWORD.as_bytes(), &SaltString::generate(&mut OsRng))
            .unwrap()
            .to_string();
        let this = Self {
            hash,
            stock,
            engine: Engine::new(PRODUCTION).unwrap(),
        };
        // The engine's buffers, allocated once as in the service.
        this.parallel(cores, Duration::from_millis(1));
        this
    }

    /// The time `n` verifications take one after another.
    fn single(&self, stock: bool, n: usize) -> Duration {
        let parsed = PasswordHash::new(&self.hash).unwrap();
        let started = Instant::now();
        for _ in 0..n {
            if stock {
                self.stock
                    .verify_password(PASSWORD.as_bytes(), &parsed)
                    .unwrap();
            } else {
                assert!(self.engine.verify(PASSWORD.as_bytes(), &parsed));
            }
        }
        started.elapsed()
    }

    /// How many verifications `cores` threads complete in about `run`, and in how long.
    fn parallel(&self, cores: usize, run: Duration) -> (u64, Duration) {
        let started = Instant::now();
        let count = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..cores)
                .map(|_| {
                    scope.spawn(|| {
                        let parsed = PasswordHash::new(&self.hash).unwrap();
                        let mut n = 0;
                        while started.elapsed() < run {
                            assert!(self.engine.verify(PASSWORD.as_bytes(), &parsed));
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        (count, started.elapsed())
    }
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

/// A running service with the given argon2 cost and one account, and its Redis URL.
struct Bench {
    base: String,
    client: reqwest::Client,
    redis_url: String,
    cores: usize,
    /// Dropped with the bench, not before.
    _database: std::sync::Arc<shared::testing::TestDatabase>,
}

impl Bench {
    async fn start(memory_kib: u32, iterations: u32, cores: usize) -> Self {
        let db_url = shared::testing::fresh_database("auth", MIGRATIONS).await;
        let redis_url = shared::testing::redis_url();
        let big = Rate::new(1_000_000, 60);
        let settings = Settings {
            http: HttpSettings {
                listen_addr: "127.0.0.1:0".parse().unwrap(),
                log_level: "warn".into(),
                ..HttpSettings::default()
            },
            auth: AuthSettings {
                database_url: SecretString::from(shared::testing::as_role(
                    &db_url,
                    "auth_service_app",
                )),
                redis_url: SecretString::from(redis_url.clone()),
                redis_prefix: shared::testing::redis_prefix(),
                key_encryption_key: SecretString::from(
                    "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                ),
                audit_hmac_key: SecretString::from("c2VhbHMgdGhlIGF1ZGl0IGNoYWluIGluIHRlc3RzISE="),
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
        let resp = client
            .post(format!("{base}/v1/auth/signup"))
            .json(&json!({"email": EMAIL, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        Self {
            base,
            client,
            redis_url,
            cores,
            _database: db_url,
        }
    }

    /// Logins per second from `cores * 8` concurrent clients (`LOGIN_BENCH_CLIENTS`) over
    /// `run`, and how many. Fewer leave the hashing slots idle now and then: each client
    /// waits on PostgreSQL and Redis between hashes, and those wait for a core.
    async fn logins(&self, run: Duration) -> (f64, u64) {
        let done = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let clients = std::env::var("LOGIN_BENCH_CLIENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.cores * 8);
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                let (client, base, done) = (self.client.clone(), self.base.clone(), done.clone());
                tokio::spawn(async move {
                    while started.elapsed() < run {
                        let resp = client
                            .post(format!("{base}/v1/auth/login"))
                            .json(&json!({"email": EMAIL, "password": PASSWORD}))
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
        let logins = done.load(Ordering::Relaxed);
        (logins as f64 / started.elapsed().as_secs_f64(), logins)
    }

    /// Redis commands per login, net of the background loops' own traffic.
    async fn redis_per_login(&self) -> f64 {
        let idle_start = redis_commands(&self.redis_url).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle_per_sec = (redis_commands(&self.redis_url).await - idle_start) as f64 / 3.0;
        let before = redis_commands(&self.redis_url).await;
        let started = Instant::now();
        let (_, logins) = self.logins(Duration::from_secs(3)).await;
        let commands = (redis_commands(&self.redis_url).await - before) as f64
            - idle_per_sec * started.elapsed().as_secs_f64();
        commands / logins as f64
    }
}

/// One round's login throughput and its ratios (in %) to the limits measured just before.
struct Round {
    rate: f64,
    vs_crate: f64,
    vs_engine: f64,
    vs_alone: f64,
    alone_vs_engine: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
#[expect(clippy::print_stdout, reason = "a benchmark reports on stdout")]
async fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // `LOGIN_BENCH_OVERHEAD=1`: only the cheap-hash run, to profile what surrounds argon2.
    if std::env::var_os("LOGIN_BENCH_OVERHEAD").is_some() {
        let bench = Bench::start(1024, 1, cores).await;
        let (rate, logins) = bench.logins(Duration::from_secs(15)).await;
        println!("with a trivial hash: {rate:.0} logins/s ({logins} logins)");
        return;
    }
    let bench = Bench::start(19 * 1024, 2, cores).await;
    bench.logins(Duration::from_secs(2)).await; // warm up
    let argon2 = Argon2Alone::new(cores);
    println!(
        "round  crate verify  engine verify  argon2 alone/s  logins/s  vs crate  vs engine  vs alone"
    );
    let mut rounds = Vec::new();
    for round in 1..=ROUNDS {
        let (mut t_stock, mut t_engine) = (Duration::ZERO, Duration::ZERO);
        let (mut alone_n, mut alone_t) = (0, Duration::ZERO);
        let (mut logins, mut logins_t) = (0, Duration::ZERO);
        for _ in 0..SLICES {
            t_stock += argon2.single(true, SLICE_SINGLE);
            t_engine += argon2.single(false, SLICE_SINGLE);
            let (n, t) = argon2.parallel(cores, SLICE_PARALLEL);
            (alone_n, alone_t) = (alone_n + n, alone_t + t);
            let started = Instant::now();
            let (_, n) = bench.logins(SLICE_LOGINS).await;
            (logins, logins_t) = (logins + n, logins_t + started.elapsed());
        }
        let verifies = (SLICES * SLICE_SINGLE) as f64;
        let (t_stock, t_engine) = (
            t_stock.as_secs_f64() / verifies,
            t_engine.as_secs_f64() / verifies,
        );
        let alone = alone_n as f64 / alone_t.as_secs_f64();
        let rate = logins as f64 / logins_t.as_secs_f64();
        let r = Round {
            rate,
            vs_crate: rate * t_stock / cores as f64 * 100.0,
            vs_engine: rate * t_engine / cores as f64 * 100.0,
            vs_alone: rate / alone * 100.0,
            alone_vs_engine: alone * t_engine / cores as f64 * 100.0,
        };
        println!(
            "{round:>5}  {:>9.1} ms  {:>10.1} ms  {alone:>14.1}  {rate:>8.1}  {:>6.0} %  {:>7.0} %  {:>6.0} %",
            t_stock * 1000.0,
            t_engine * 1000.0,
            r.vs_crate,
            r.vs_engine,
            r.vs_alone,
        );
        rounds.push(r);
    }
    let redis_per_login = bench.redis_per_login().await;
    let cheap = Bench::start(1024, 1, cores).await;
    cheap.logins(Duration::from_secs(2)).await;
    let (overhead_only, _) = cheap.logins(Duration::from_secs(10)).await;

    let of = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    println!("cores:                             {cores}");
    println!(
        "login throughput, median of rounds: {:.1} logins/s",
        of(|r| r.rate)
    );
    println!(
        "vs cores / one verify, median:      {:.0} % (argon2 crate's verify_password), {:.0} % (the service's engine)",
        of(|r| r.vs_crate),
        of(|r| r.vs_engine)
    );
    println!(
        "argon2 alone on every core:         {:.0} % of cores / one engine verify; logins reach {:.0} % of it",
        of(|r| r.alone_vs_engine),
        of(|r| r.vs_alone)
    );
    println!("Redis commands per login:          {redis_per_login:.2}");
    println!(
        "with a trivial hash (m=1MiB, t=1):  {overhead_only:.0} logins/s, so about {:.1} ms of CPU per login around argon2",
        cores as f64 * 1000.0 / overhead_only
    );
}
