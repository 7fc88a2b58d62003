//! Rate limits per route class, and brute-force throttling of logins and client
//! authentication without lockout.
//!
//! Failed attempts are counted per (account, ip) and per account. Past
//! `AUTH_THROTTLE_IP_FAILURES` failures for one account from one ip, that ip must wait before
//! its next attempt for that account (1 s, doubling per further failure, at most
//! `AUTH_THROTTLE_MAX_SECS`). Past `AUTH_THROTTLE_ACCOUNT_FAILURES` failures for one account
//! from anywhere (spraying, stuffing), every ip must wait likewise, except the ips that
//! logged into that account successfully before: the owner at their usual ip is never
//! blocked by an attacker elsewhere. A success clears the counters. Nothing is permanent.
//! Accounts appear in Redis keys only as SHA-256 digests of the normalised email.

use serde_json::json;
use sha2::{Digest, Sha256};
use shared::ApiError;
use shared::ratelimit::{Limit, Lock, Rate};

use crate::state::AppState;

/// Whose attempts a throttle counts.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A normalised email.
    Account(&'a str),
    /// An OAuth client id.
    Client(&'a str),
}

impl Subject<'_> {
    fn key(&self) -> String {
        let (kind, raw) = match self {
            Subject::Account(email) => ("a", *email),
            Subject::Client(id) => ("c", *id),
        };
        let digest = Sha256::digest(raw.as_bytes());
        format!("{kind}{}", hex(&digest[..16]))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Keys {
    fails_ip: String,
    fails_all: String,
    lock_ip: String,
    lock_all: String,
    known: String,
}

fn keys(state: &AppState, subject: Subject<'_>, ip: &str) -> Keys {
    let base = format!("{}bf:{}", state.settings.auth.redis_prefix, subject.key());
    Keys {
        fails_ip: format!("{base}:f:{ip}"),
        fails_all: format!("{base}:f"),
        lock_ip: format!("{base}:l:{ip}"),
        lock_all: format!("{base}:l"),
        known: format!("{base}:k"),
    }
}

/// The limits of a login: per ip and per account, plus the brute-force locks; one Redis
/// round trip.
pub async fn check_login(
    state: &AppState,
    subject: Subject<'_>,
    ip: &str,
    per_ip: (&'static str, Rate),
    per_subject: (&'static str, Rate),
) -> Result<(), ApiError> {
    let k = keys(state, subject, ip);
    let limits = [
        Limit {
            policy: per_ip.0,
            rate: per_ip.1,
            key: ip.to_owned(),
        },
        Limit {
            policy: per_subject.0,
            rate: per_subject.1,
            key: subject.key(),
        },
    ];
    let locks = [
        Lock {
            key: k.lock_ip,
            exempt: None,
        },
        Lock {
            key: k.lock_all,
            exempt: Some((k.known, ip.to_owned())),
        },
    ];
    let decision = state.limiter.check_with_locks(&limits, &locks).await;
    if decision.allowed {
        Ok(())
    } else {
        Err(decision.into_error())
    }
}

const RECORD_FAILURE: &str = r#"
local window = tonumber(ARGV[1])
local f_ip = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], window)
local f_all = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], window)
local base = 1000
local max = tonumber(ARGV[4])
if f_ip >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[3], 1, 'PX', math.min(base * 2 ^ (f_ip - tonumber(ARGV[2])), max))
end
if f_all >= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[4], 1, 'PX', math.min(base * 2 ^ (f_all - tonumber(ARGV[3])), max))
end
return f_ip
"#;

/// Count a failed attempt. Redis trouble is logged, not fatal (the rates still hold).
pub async fn record_failure(state: &AppState, subject: Subject<'_>, ip: &str) {
    let a = &state.settings.auth;
    let k = keys(state, subject, ip);
    let window_ms = a.throttle_window_secs * 1000;
    let result = redis::Script::new(RECORD_FAILURE)
        .key(k.fails_ip)
        .key(k.fails_all)
        .key(k.lock_ip)
        .key(k.lock_all)
        .arg(window_ms)
        .arg(a.throttle_ip_failures)
        .arg(a.throttle_account_failures)
        .arg(a.throttle_max_secs * 1000)
        .invoke_async::<i64>(&mut state.redis.clone())
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "recording a failed attempt failed");
    }
}

/// A success: clear the counters and remember this ip as the subject's own.
pub async fn record_success(state: &AppState, subject: Subject<'_>, ip: &str) {
    let k = keys(state, subject, ip);
    let result = redis::pipe()
        .del(&[&k.fails_ip, &k.fails_all, &k.lock_ip, &k.lock_all])
        .ignore()
        .sadd(&k.known, ip)
        .ignore()
        .expire(&k.known, 30 * 24 * 3600)
        .ignore()
        .query_async::<()>(&mut state.redis.clone())
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "recording a successful attempt failed");
    }
}

/// A plain limit on one key (signup per ip, password change per user, ...).
pub async fn enforce(
    state: &AppState,
    policy: &'static str,
    rate: Rate,
    key: &str,
) -> Result<(), ApiError> {
    state
        .limiter
        .enforce(&[Limit {
            policy,
            rate,
            key: key.to_owned(),
        }])
        .await
}

/// Details for an audit row of a refused attempt.
pub fn throttled_details() -> serde_json::Value {
    json!({ "reason": "throttled" })
}
