//! What a limited response says: the IETF `RateLimit-Policy` and `RateLimit` headers on
//! every limited response, and the 429 problem with `Retry-After` on a refusal.

use poem::http::StatusCode;

use super::{Decision, RateLimited};
use crate::problem::{ApiError, Code};

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
}

tokio::task_local! {
    /// Rate-limit headers of the current request, added to its response by the edge.
    pub static RESPONSE_HEADERS: std::cell::RefCell<Vec<(&'static str, String)>>;
}

/// Remember headers for the current response (no-op outside a request).
pub fn add_response_headers(headers: Vec<(&'static str, String)>) {
    let _ = RESPONSE_HEADERS.try_with(|h| h.borrow_mut().extend(headers));
}

impl From<RateLimited> for ApiError {
    /// 429 `RATE_LIMITED` with `Retry-After` and the headers.
    fn from(RateLimited(decision): RateLimited) -> Self {
        let mut err = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            "Too many requests; retry after the time in Retry-After.",
        )
        .with_retry_after(decision.retry_after_secs);
        for (name, value) in decision.headers() {
            err = err.with_header(name, value);
        }
        err
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::{LimitState, Rate};

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
