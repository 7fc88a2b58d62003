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
use shared::ratelimit::{Limit, Lock, Rate, RateLimited};

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

/// How a subject appears in Redis keys (a digest, never the email itself).
pub fn subject_key(subject: Subject<'_>) -> String {
    subject.key()
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

/// The limits of a login, and the brute-force locks, in one Redis round trip: per ip, and
/// per account, where an ip the account logged in from before counts under a budget of its
/// own (and passes the account-wide lock), so that no attacker elsewhere can lock the owner
/// out by spending the account's shared budget.
pub async fn check_login(state: &AppState, account: &str, ip: &str) -> Result<(), RateLimited> {
    let a = &state.settings.auth;
    let subject = Subject::Account(account);
    let k = keys(state, subject, ip);
    let limits = [
        Limit::new("login-ip", a.rate_login_ip, ip),
        Limit::new("login-account", a.rate_login_account, subject.key())
            .own_budget_if_known(k.known.clone(), ip.to_owned()),
    ];
    check(state, &limits, &locks(k, ip)).await
}

/// The per-client limit of client authentication at the OAuth endpoints, once the secret
/// has been checked (the per-ip limit came first, before any database work). A client that
/// proved its secret counts under a budget of its own and passes the locks (a 256-bit
/// secret cannot be guessed); failed attempts share the client's other budget, which is all
/// that an attacker who knows the (public) client id can spend.
pub async fn check_client(
    state: &AppState,
    client_id: &str,
    ip: &str,
    authenticated: bool,
) -> Result<(), RateLimited> {
    let a = &state.settings.auth;
    let subject = Subject::Client(client_id);
    if authenticated {
        let own = Limit::new(
            "token-client",
            a.rate_token_client,
            format!("{}:ok", subject.key()),
        );
        return check(state, &[own], &[]).await;
    }
    let shared = Limit::new("token-client", a.rate_token_client, subject.key());
    check(state, &[shared], &locks(keys(state, subject, ip), ip)).await
}

/// The brute-force locks of a subject for `ip`: the ip's own, and the subject-wide one that
/// the subject's known ips pass.
fn locks(k: Keys, ip: &str) -> Vec<Lock> {
    vec![
        Lock {
            key: k.lock_ip,
            exempt: None,
        },
        Lock {
            key: k.lock_all,
            exempt: Some((k.known, ip.to_owned())),
        },
    ]
}

async fn check(state: &AppState, limits: &[Limit], locks: &[Lock]) -> Result<(), RateLimited> {
    let decision = state.limiter.check_with_locks(limits, locks).await;
    if decision.allowed {
        Ok(())
    } else {
        Err(RateLimited(decision))
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
) -> Result<(), RateLimited> {
    state
        .limiter
        .enforce(&[Limit::new(policy, rate, key)])
        .await
}

/// Details for an audit row of a refused attempt.
pub fn throttled_details() -> serde_json::Value {
    json!({ "reason": "throttled" })
}

/// Claims the right to audit a refusal: at most one per account and one per ip in a window.
const FIRST_REFUSAL: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[1], 1, 'PX', ARGV[1])
redis.call('SET', KEYS[2], 1, 'PX', ARGV[1])
return 1
"#;

/// How long one audited refusal stands for the refusals after it.
const REFUSAL_AUDIT_WINDOW_MS: u64 = 60_000;

/// Whether a refused attempt should be audited: the first refusal per subject (account or
/// client) and per ip in a minute is; the rest only count in `auth_refusals_total`, so that
/// a flood of refused attempts does not become a flood of audit rows (written, chained and
/// sealed, and kept forever) at an attacker's pace. When Redis cannot
/// say, the refusal is not audited (the limiter is then on its per-process fallback).
pub async fn audit_refusal(state: &AppState, subject: Subject<'_>, ip: &str) -> bool {
    let base = format!("{}bf:audited:", state.settings.auth.redis_prefix);
    let first = redis::Script::new(FIRST_REFUSAL)
        .key(format!("{base}{}", subject.key()))
        .key(format!("{base}ip:{ip}"))
        .arg(REFUSAL_AUDIT_WINDOW_MS)
        .invoke_async::<i64>(&mut state.redis.clone())
        .await;
    let audited = matches!(first, Ok(1));
    let kind = match subject {
        Subject::Account(_) => "login",
        Subject::Client(_) => "client",
    };
    metrics::counter!(
        "auth_refusals_total",
        "kind" => kind,
        "audited" => if audited { "true" } else { "false" }
    )
    .increment(1);
    audited
}

/// Forget the addresses an account logged in from: after a password change or a disabling,
/// an address that knew the old password keeps no budget of its own and passes no lock.
pub async fn forget_known_ips(state: &AppState, account: &str) {
    let key = known_ips_key(state, account);
    let result = redis::cmd("DEL")
        .arg(&key)
        .query_async::<()>(&mut state.redis.clone())
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "forgetting an account's known addresses failed");
    }
}

/// The Redis set of the addresses an account logged in from.
pub fn known_ips_key(state: &AppState, account: &str) -> String {
    keys(state, Subject::Account(account), "").known
}
