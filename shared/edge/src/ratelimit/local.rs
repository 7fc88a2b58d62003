//! The per-process fallback while Redis is unreachable: the same GCRA, in memory, per
//! replica (so never unlimited).
//!
//! Not `governor`: a request checks several limits all or nothing (a refusal by one limit
//! consumes none of the others), which governor's keyed limiters cannot do in one step.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Decision, Limit, decode};

/// GCRA state (the theoretical arrival time) by key.
#[derive(Default)]
pub struct LocalLimiter {
    tats: Mutex<HashMap<String, Instant>>,
}

impl LocalLimiter {
    pub fn check(&self, limits: &[Limit], now: Instant) -> Decision {
        let mut map = self.tats.lock().unwrap_or_else(|e| e.into_inner());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Rate;

    #[test]
    fn the_local_fallback_allows_the_burst_then_refuses_then_recovers() {
        let rl = LocalLimiter::default();
        let limits = [Limit::new("p", Rate::new(3, 1), "k")];
        let now = Instant::now();
        for left in [2, 1, 0] {
            let d = rl.check(&limits, now);
            assert!(d.allowed);
            assert_eq!(d.states[0].remaining, left);
        }
        let refused = rl.check(&limits, now);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1);
        assert!(rl.check(&limits, now + Duration::from_millis(400)).allowed);
    }

    #[test]
    fn a_refusal_by_one_limit_consumes_none_of_the_others() {
        let rl = LocalLimiter::default();
        let tight = Limit::new("a", Rate::new(1, 60), "k");
        let loose = Limit::new("b", Rate::new(2, 60), "k");
        let now = Instant::now();
        assert!(rl.check(&[tight.clone(), loose.clone()], now).allowed);
        assert!(!rl.check(&[tight, loose.clone()], now).allowed);
        assert!(rl.check(&[loose], now).allowed, "b still had one left");
    }
}
