//! argon2id alone, on every core, at the parameters the auth service is configured with
//! (`AUTH_ARGON2_*`, defaults otherwise): the limit `deploy/dev bench` holds login against.
//! Prints the hashes per second over all cores.
//!
//! `cargo run --release -p auth-service --example argon2_rate -- [seconds]`

use std::io::Write;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Params, Version};
use auth_service::config::{AuthSettings, PREFIX};

fn main() -> anyhow::Result<()> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 5.0,
    };
    let (_, auth, _) = shared::config::load::<AuthSettings>(PREFIX, None, "127.0.0.1:0")?;
    let params = Params::new(
        auth.argon2_memory_kib,
        auth.argon2_iterations,
        auth.argon2_parallelism,
        None,
    )
    .map_err(|e| anyhow::anyhow!("invalid argon2 parameters: {e}"))?;
    let cores = std::thread::available_parallelism()?.get();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let hashes: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..cores)
            .map(|_| {
                let params = params.clone();
                scope.spawn(move || {
                    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                    let mut out = [0u8; 32];
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        argon2
                            .hash_password_into(
                                b"correct horse battery",
                                b"a salt of 16 b..",
                                &mut out,
                            )
                            .expect("hashing with valid parameters");
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
    });
    let rate = hashes as f64 / started.elapsed().as_secs_f64();
    writeln!(std::io::stdout(), "{rate:.1}")?;
    Ok(())
}
