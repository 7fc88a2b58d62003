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

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use redis::aio::ConnectionManager;
use serde::Deserialize;

use crate::problem::ApiError;

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
    fn emission_ms(self) -> u64 {
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

impl Decision {
    /// `RateLimit-Policy` and `RateLimit` header values.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let policy = self
            .states
            .iter()
            .map(|s| {
                format!(
                    "\"{}\";q={};w={}",
                    s.policy, s.rate.limit, s.rate.window_secs
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let state = self
            .states
            .iter()
            .map(|s| format!("\"{}\";r={};t={}", s.policy, s.remaining, s.reset_secs))
            .collect::<Vec<_>>()
            .join(", ");
        vec![("ratelimit-policy", policy), ("ratelimit", state)]
    }

    /// 429 `RATE_LIMITED` with `Retry-After` and the headers.
    pub fn into_error(self) -> ApiError {
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMITED",
            "Too many requests; retry after the time in Retry-After.",
        )
        .with_retry_after(self.retry_after_secs);
        for (name, value) in self.headers() {
            err = err.with_header(name, value);
        }
        err
    }
}

tokio::task_local! {
    /// Rate-limit headers of the current request, added to its response by the edge.
    pub static RESPONSE_HEADERS: std::cell::RefCell<Vec<(&'static str, String)>>;
}

/// Remember headers for the current response (no-op outside a request).
pub fn add_response_headers(headers: Vec<(&'static str, String)>) {
    let _ = RESPONSE_HEADERS.try_with(|h| h.borrow_mut().extend(headers));
}

/// A temporary refusal set elsewhere (brute-force throttling): while `key` exists the
/// request is refused, unless `member` is in the set `exempt` (the account's known ips).
#[derive(Debug, Clone)]
pub struct Lock {
    pub key: String,
    pub exempt: Option<(String, String)>,
}

/// GCRA over several keys, after lock checks: refuse if a lock applies or any rate is over;
/// else consume one from each rate.
/// ARGV[1] = number of rates, ARGV[2] = number of locks, then per rate its emission
/// interval (ms), burst and known member ("" for none), then the exempt member per lock
/// ("" for none).
/// KEYS: per rate its shared counter, its member's own counter and the set of known members;
/// then per lock its key and its exemption set.
/// Returns {allowed, retry_after_ms, remaining_1, reset_ms_1, remaining_2, reset_ms_2, ...}.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local locks = tonumber(ARGV[2])
local retry = 0
for l = 1, locks do
  local ttl = redis.call('PTTL', KEYS[3 * n + 2 * l - 1])
  if ttl > 0 then
    local member = ARGV[2 + 3 * n + l]
    if member == '' or redis.call('SISMEMBER', KEYS[3 * n + 2 * l], member) == 0 then
      if ttl > retry then retry = ttl end
    end
  end
end
local keys = {}
local tats = {}
for i = 1, n do
  local emission = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local member = ARGV[3 * i + 2]
  local key = KEYS[3 * i - 2]
  if member ~= '' and redis.call('SISMEMBER', KEYS[3 * i], member) == 1 then
    key = KEYS[3 * i - 1]
  end
  keys[i] = key
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat
  local allow_at = tat + emission - burst * emission
  if now < allow_at and allow_at - now > retry then retry = allow_at - now end
end
local out = {}
local allowed = retry == 0
if allowed then out[1] = 1 else out[1] = 0 end
out[2] = retry
for i = 1, n do
  local emission = tonumber(ARGV[3 * i])
  local burst = tonumber(ARGV[3 * i + 1])
  local tat = tats[i]
  if allowed then
    tat = tat + emission
    redis.call('SET', keys[i], tat, 'PX', tat - now)
  end
  local left = math.floor((now - (tat - burst * emission)) / emission)
  if left < 0 then left = 0 end
  out[#out + 1] = left
  out[#out + 1] = tat - now
end
return out
"#;

pub struct RateLimiter {
    redis: ConnectionManager,
    prefix: String,
    script: redis::Script,
    /// The per-process fallback: GCRA state by key.
    local: Mutex<HashMap<String, Instant>>,
    degraded: AtomicBool,
}

impl RateLimiter {
    pub fn new(redis: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis,
            prefix: format!("{prefix}rl:"),
            script: redis::Script::new(GCRA),
            local: Mutex::new(HashMap::new()),
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
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "Redis unreachable: rate limits fall back to this process");
                }
                self.check_local(limits, Instant::now())
            }
        };
        add_response_headers(decision.headers());
        decision
    }

    /// `Err(429)` when refused.
    pub async fn enforce(&self, limits: &[Limit]) -> Result<(), ApiError> {
        let decision = self.check(limits).await;
        if decision.allowed {
            Ok(())
        } else {
            tracing::info!(policies = ?limits.iter().map(|l| l.policy).collect::<Vec<_>>(), "rate limited");
            Err(decision.into_error())
        }
    }

    async fn check_redis(&self, limits: &[Limit], locks: &[Lock]) -> redis::RedisResult<Decision> {
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(limits.len()).arg(locks.len());
        for limit in limits {
            let shared = format!("{}{}:{}", self.prefix, limit.policy, limit.key);
            let (own, set, member) = match &limit.own {
                Some(own) => (
                    format!("{shared}:{}", own.member),
                    own.set.clone(),
                    own.member.clone(),
                ),
                None => (shared.clone(), shared.clone(), String::new()),
            };
            invocation
                .key(shared)
                .key(own)
                .key(set)
                .arg(limit.rate.emission_ms())
                .arg(limit.rate.limit)
                .arg(member);
        }
        for lock in locks {
            let (set, member) = lock.exempt.clone().unwrap_or_default();
            invocation
                .key(&lock.key)
                .key(if set.is_empty() {
                    lock.key.clone()
                } else {
                    set
                })
                .arg(member);
        }
        let mut conn = self.redis.clone();
        let out: Vec<i64> = tokio::time::timeout(
            Duration::from_millis(500),
            invocation.invoke_async(&mut conn),
        )
        .await
        .map_err(|_| {
            redis::RedisError::from((redis::ErrorKind::Io, "rate limit check timed out"))
        })??;
        Ok(decode(limits, &out))
    }

    fn check_local(&self, limits: &[Limit], now: Instant) -> Decision {
        let mut map = self.local.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, tat| *tat > now);
        }
        let tats: Vec<Instant> = limits
            .iter()
            .map(|l| {
                let key = format!("{}:{}", l.policy, l.key);
                map.get(&key).copied().filter(|t| *t > now).unwrap_or(now)
            })
            .collect();
        let mut out = vec![1i64, 0];
        let mut retry = 0u64;
        for (limit, tat) in limits.iter().zip(&tats) {
            let emission = limit.rate.emission_ms();
            let burst_span = emission * u64::from(limit.rate.limit);
            let ahead = tat.duration_since(now).as_millis() as u64 + emission;
            if ahead > burst_span {
                retry = retry.max(ahead - burst_span);
            }
        }
        if retry > 0 {
            out[0] = 0;
            out[1] = retry as i64;
        }
        for (limit, tat) in limits.iter().zip(&tats) {
            let emission = limit.rate.emission_ms();
            let burst_span = emission * u64::from(limit.rate.limit);
            let mut next = *tat;
            if retry == 0 {
                next = *tat + Duration::from_millis(emission);
                map.insert(format!("{}:{}", limit.policy, limit.key), next);
            }
            let ahead = next.duration_since(now).as_millis() as u64;
            out.push((burst_span.saturating_sub(ahead) / emission) as i64);
            out.push(ahead as i64);
        }
        decode(limits, &out)
    }
}

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

    fn limiter() -> RateLimiter {
        // An address nothing listens on: every check falls back to process memory.
        let client = redis::Client::open("redis://127.0.0.1:1").unwrap();
        let config = redis::aio::ConnectionManagerConfig::new().set_number_of_retries(0);
        RateLimiter::new(
            ConnectionManager::new_lazy_with_config(client, config).unwrap(),
            "t:",
        )
    }

    #[test]
    fn rates_parse_from_config_strings() {
        assert_eq!("30/60s".parse::<Rate>(), Ok(Rate::new(30, 60)));
        assert_eq!(" 5 / 1 ".parse::<Rate>(), Ok(Rate::new(5, 1)));
        for bad in ["", "30", "0/60", "30/0", "x/60", "30/60m"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_local_fallback_allows_the_burst_then_refuses_then_recovers() {
        let rl = limiter();
        let limits = [Limit::new("p", Rate::new(3, 1), "k")];
        let now = Instant::now();
        for left in [2, 1, 0] {
            let d = rl.check_local(&limits, now);
            assert!(d.allowed);
            assert_eq!(d.states[0].remaining, left);
        }
        let refused = rl.check_local(&limits, now);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1);
        assert!(
            rl.check_local(&limits, now + Duration::from_millis(400))
                .allowed
        );
    }

    #[tokio::test]
    async fn a_refusal_by_one_limit_consumes_none_of_the_others() {
        let rl = limiter();
        let tight = Limit::new("a", Rate::new(1, 60), "k");
        let loose = Limit::new("b", Rate::new(2, 60), "k");
        let now = Instant::now();
        assert!(rl.check_local(&[tight.clone(), loose.clone()], now).allowed);
        assert!(!rl.check_local(&[tight, loose.clone()], now).allowed);
        assert!(
            rl.check_local(&[loose], now).allowed,
            "b still had one left"
        );
    }

    #[test]
    fn headers_follow_the_ietf_structured_form() {
        let d = Decision {
            allowed: true,
            retry_after_secs: 0,
            states: vec![LimitState {
                policy: "login-ip",
                rate: Rate::new(30, 60),
                remaining: 29,
                reset_secs: 2,
            }],
        };
        assert_eq!(
            d.headers(),
            vec![
                ("ratelimit-policy", "\"login-ip\";q=30;w=60".to_owned()),
                ("ratelimit", "\"login-ip\";r=29;t=2".to_owned()),
            ]
        );
    }
}
