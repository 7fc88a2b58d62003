/// Who is asking, for the audit log, session records and per-address limits (read from the
/// request by the api layer).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The client's address, as recorded.
    pub ip: String,
    /// What rate limits and throttling count the client under (an IPv6 client's /64).
    pub ip_key: String,
    pub user_agent: Option<String>,
    pub request_id: String,
}
