//! The shared check: every limit and lock of a request in one Lua script (`gcra.lua`), on
//! Redis's clock, in one round trip.

use std::time::Duration;

use super::{Decision, Limit, Lock, RateLimiter, decode};

impl RateLimiter {
    pub(super) async fn check_redis(
        &self,
        limits: &[Limit],
        locks: &[Lock],
    ) -> redis::RedisResult<Decision> {
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
}
