//! Rate limits shared by every replica: GCRA (the generic cell rate algorithm) in Redis.
//!
//! One request checks all its limits (per ip, per account, ...) in a single Lua script, so a
//! check costs exactly one Redis round trip, and a request refused by one limit consumes none
//! of the others. Redis's own clock is used, so replicas agree. When Redis is unreachable the
//! same algorithm runs in process memory (per replica, never unlimited) and the limiter
//! reports itself degraded.
//!
//! Every limited response carries the IETF `RateLimit-Policy` and `RateLimit` headers
//! (structured-field form: `"login-ip";q=30;w=60` and `"login-ip";r=29;t=2`), and a refused
//! one `Retry-After`.

mod headers;
mod local;
mod redis_check;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use redis::aio::ConnectionManager;
use serde::Deserialize;

pub use headers::{RESPONSE_HEADERS, add_response_headers};
use local::LocalLimiter;

/// `N/Ss`: at most `N` requests per `S` seconds (with a burst of `N`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u32,
    pub window_secs: u32,
}

impl Rate {
    pub const fn new(limit: u32, window_secs: u32) -> Self {
        Self { limit, window_secs }
    }

    /// Milliseconds between two requests at the sustained rate.
    pub(super) fn emission_ms(self) -> u64 {
        (u64::from(self.window_secs) * 1000 / u64::from(self.limit.max(1))).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}s", self.limit, self.window_secs)
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a rate like 30/60s (30 requests per 60 seconds)");
        let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let w = w.trim().trim_end_matches('s');
        let window_secs: u32 = w.parse().map_err(|_| bad())?;
        if limit == 0 || window_secs == 0 {
            return Err(bad());
        }
        Ok(Self { limit, window_secs })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let s = String::deserialize(de)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One limit to check: a named policy, its rate, and the key it counts (an ip, an account).
#[derive(Debug, Clone)]
pub struct Limit {
    pub policy: &'static str,
    pub rate: Rate,
    pub key: String,
    /// A budget of its own for a known member (see [`Own`]).
    pub own: Option<Own>,
}

impl Limit {
    pub fn new(policy: &'static str, rate: Rate, key: impl Into<String>) -> Self {
        Self {
            policy,
            rate,
            key: key.into(),
            own: None,
        }
    }

    /// Count `member` under a budget of its own while it is in the Redis set `set`.
    pub fn own_budget_if_known(mut self, set: String, member: String) -> Self {
        self.own = Some(Own { set, member });
        self
    }
}

/// When `member` is in the Redis set `set` (an account's known ips, say), the request counts
/// under `key:member`, the member's own budget, instead of the key's shared one: whoever
/// exhausts the shared budget (an attacker elsewhere) cannot lock the known member out.
/// The rate is the same. While Redis is unreachable every request counts as unknown.
#[derive(Debug, Clone)]
pub struct Own {
    pub set: String,
    pub member: String,
}

/// The outcome for one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitState {
    pub policy: &'static str,
    pub rate: Rate,
    pub remaining: u64,
    /// Seconds until the budget is full again.
    pub reset_secs: u64,
}

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// Seconds to wait when refused.
    pub retry_after_secs: u64,
    pub states: Vec<LimitState>,
}

/// A request refused by a limit or a lock; at the edge, 429 with `Retry-After` and the
/// `RateLimit` headers.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rate limited; retry after {} s", .0.retry_after_secs)]
pub struct RateLimited(pub Decision);

/// A temporary refusal set elsewhere (brute-force throttling): while `key` exists the
/// request is refused, unless `member` is in the set `exempt` (the account's known ips).
#[derive(Debug, Clone)]
pub struct Lock {
    pub key: String,
    pub exempt: Option<(String, String)>,
}

pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
    script: redis::Script,
    /// The per-process fallback.
    local: LocalLimiter,
    degraded: AtomicBool,
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: format!("{prefix}rl:"),
            script: redis::Script::new(include_str!("gcra.lua")),
            local: LocalLimiter::default(),
            degraded: AtomicBool::new(false),
        }
    }

    /// Whether the last check fell back to process memory (Redis unreachable).
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    /// Check and consume; the headers are recorded for the response.
    pub async fn check(&self, limits: &[Limit]) -> Decision {
        self.check_with_locks(limits, &[]).await
    }

    /// Like [`Self::check`], also refusing while a lock applies. Locks live only in Redis:
    /// while it is unreachable they are not enforced (the rates still are, per process).
    pub async fn check_with_locks(&self, limits: &[Limit], locks: &[Lock]) -> Decision {
        let decision = match self.check_redis(limits, locks).await {
            Ok(decision) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::info!("rate limits are shared through Redis again");
                }
                decision
            }
            Err(err) => {
                shared_infra::metrics::redis_error("rate_limit");
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "Redis unreachable: rate limits fall back to this process");
                }
                self.local.check(limits, Instant::now())
            }
        };
        add_response_headers(decision.headers());
        decision
    }

    /// Check and consume; refused is an error.
    pub async fn enforce(&self, limits: &[Limit]) -> Result<(), RateLimited> {
        let decision = self.check(limits).await;
        if decision.allowed {
            Ok(())
        } else {
            tracing::info!(policies = ?limits.iter().map(|l| l.policy).collect::<Vec<_>>(), "rate limited");
            Err(RateLimited(decision))
        }
    }
}

/// A check's outcome from the script's (or the fallback's) flat answer.
fn decode(limits: &[Limit], out: &[i64]) -> Decision {
    let allowed = out.first() == Some(&1);
    let retry_ms = out.get(1).copied().unwrap_or(0).max(0) as u64;
    let states = limits
        .iter()
        .enumerate()
        .map(|(i, l)| LimitState {
            policy: l.policy,
            rate: l.rate,
            remaining: out.get(2 + 2 * i).copied().unwrap_or(0).max(0) as u64,
            reset_secs: (out.get(3 + 2 * i).copied().unwrap_or(0).max(0) as u64).div_ceil(1000),
        })
        .collect();
    Decision {
        allowed,
        retry_after_secs: retry_ms.div_ceil(1000).max(u64::from(!allowed)),
        states,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_from_config_strings() {
        assert_eq!("30/60s".parse::<Rate>(), Ok(Rate::new(30, 60)));
        assert_eq!(" 5 / 1 ".parse::<Rate>(), Ok(Rate::new(5, 1)));
        for bad in ["", "30", "0/60", "30/0", "x/60", "30/60m"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
