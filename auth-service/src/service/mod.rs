//! Use cases as plain async functions over the app state.

pub mod admin;
pub mod audit_seal;
pub mod auth;
pub mod clients;
pub mod events;
pub mod oauth;
pub mod purge;
pub mod revocation;
pub mod throttle;
pub mod users;

use poem::Request;
use shared::middleware::{ClientIp, RequestId};

/// Who is asking, for the audit log and session records.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The client's address, as recorded.
    pub ip: String,
    /// What rate limits and throttling count the client under (an IPv6 client's /64).
    pub ip_key: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}

impl RequestMeta {
    pub fn from_request(req: &Request) -> Self {
        let client = req.extensions().get::<ClientIp>().map(|ip| ip.0);
        let ip = client.map(|ip| ip.to_string()).unwrap_or_default();
        let ip_key = client.map(shared::client_ip::limit_key).unwrap_or_default();
        let user_agent = req
            .headers()
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect());
        let request_id = req
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.clone())
            .unwrap_or_default();
        Self {
            ip,
            ip_key,
            user_agent,
            request_id,
        }
    }
}
