//! The edge every request passes through, outermost first:
//!
//! 1. a request id (the caller's `X-Request-Id` when it is a sane token, else a new UUIDv7),
//!    set on the response, in the `request` span and in every problem body;
//! 2. the client ip, from the one configured forwarding header, only when the peer is a
//!    trusted proxy;
//! 3. the body read up front, under the size limit (413) and the body timeout (408);
//! 4. the request timeout (503);
//! 5. every error, the framework's own included, turned into problem+json;
//! 6. security headers (and `Vary: Origin`, `Allow` on a 405), metrics and one log line per
//!    request.

use crate::problem::{Code, FieldCode};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use poem::http::{HeaderValue, Method, StatusCode, header};
use poem::web::RemoteAddr;
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::OperationId;
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::Instrument;

use crate::allow::AllowedMethods;
use crate::client_ip::{ForwardedHeader, resolve_client_ip};
use crate::problem::{ApiError, BEARER_CHALLENGE, REQUEST_ID};

/// What the edge needs from config.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub body_limit: usize,
    pub body_read_timeout: Duration,
    pub request_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub forwarded_header: ForwardedHeader,
    /// What each path answers, for the `Allow` header of a 405.
    pub allowed: Arc<AllowedMethods>,
    pub hsts: bool,
}

/// The client's ip as the edge resolved it (see [`crate::client_ip`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The request id, also available to handlers as request data.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

pub struct Edge(Arc<EdgeConfig>);

impl Edge {
    pub fn new(config: EdgeConfig) -> Self {
        Self(Arc::new(config))
    }
}

impl<E: Endpoint> Middleware<E> for Edge {
    type Output = EdgeEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        EdgeEndpoint {
            inner: ep,
            config: self.0.clone(),
        }
    }
}

pub struct EdgeEndpoint<E> {
    inner: E,
    config: Arc<EdgeConfig>,
}

/// A request id we are willing to echo: short, and only token characters, so it cannot
/// inject anything into logs or headers.
fn sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl<E: Endpoint> Endpoint for EdgeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let request_id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| sane_request_id(v))
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let peer = match req.remote_addr() {
            RemoteAddr(poem::Addr::SocketAddr(addr)) => Some(addr.ip()),
            _ => None,
        };
        let client_ip = resolve_client_ip(
            peer.unwrap_or(IpAddr::from([127, 0, 0, 1])),
            req.headers(),
            &self.config.trusted_proxies,
            &self.config.forwarded_header,
        );
        req.extensions_mut().insert(ClientIp(client_ip));
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %method,
            path = %req.uri().path(),
        );

        let config = self.config.clone();
        let mut operation: Option<&'static str> = None;
        let fut = async {
            let outcome = match refuse_nul(req.uri()) {
                Some(err) => Err(err),
                None => read_body(&mut req, &config).await,
            };
            let outcome = match outcome {
                Err(err) => Err(err),
                Ok(()) => {
                    match tokio::time::timeout(config.request_timeout, self.inner.call(req)).await {
                        Ok(Ok(output)) => Ok(output.into_response()),
                        Ok(Err(err)) => {
                            operation = err.data::<OperationId>().map(|id| id.0);
                            Err(problem_from_poem(err))
                        }
                        Err(_) => {
                            tracing::warn!("request timed out");
                            Err(ApiError::unavailable("The request took too long.")
                                .with_retry_after(1))
                        }
                    }
                }
            };
            let mut resp = match outcome {
                Ok(resp) => resp,
                Err(err) => err.into_response(),
            };
            let limits = crate::ratelimit::RESPONSE_HEADERS
                .try_with(|h| h.take())
                .unwrap_or_default();
            for (name, value) in limits {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    resp.headers_mut().insert(name, value);
                }
            }
            finish(&mut resp, &request_id, &path, &config);
            let status = resp.status().as_u16();
            let route = resp
                .extensions()
                .get::<OperationId>()
                .map(|id| id.0)
                .or(operation)
                .unwrap_or(if status == 404 { "unmatched" } else { "other" });
            let elapsed = started.elapsed();
            shared_infra::metrics::record_request(
                route,
                method.as_str(),
                status,
                elapsed.as_secs_f64(),
            );
            if status >= 500 {
                tracing::warn!(
                    status,
                    route,
                    latency_ms = elapsed.as_millis() as u64,
                    "request failed"
                );
            } else {
                tracing::info!(
                    status,
                    route,
                    latency_ms = elapsed.as_millis() as u64,
                    "request"
                );
            }
            resp
        };
        let fut =
            crate::ratelimit::RESPONSE_HEADERS.scope(Default::default(), fut.instrument(span));
        Ok(REQUEST_ID.scope(request_id.clone(), fut).await)
    }
}

/// A NUL byte (`%00`) can reach no resource and no text column (PostgreSQL refuses it), so
/// it is refused before any handler: in the path it names nothing (404), in a query
/// parameter it is an invalid value of that parameter (422).
fn refuse_nul(uri: &poem::http::Uri) -> Option<ApiError> {
    if uri.path().contains("%00") {
        return Some(ApiError::not_found("No such resource."));
    }
    let query = uri.query()?;
    let param = query.split('&').find(|pair| pair.contains("%00"))?;
    let name = param.split('=').next().unwrap_or_default();
    let name = if name.contains('%') || name.is_empty() {
        "query"
    } else {
        name
    };
    Some(ApiError::validation(vec![crate::FieldError::new(
        name,
        FieldCode::InvalidValue,
        "must not contain a NUL character",
    )]))
}

/// Read the whole body under the limit and the timeout, so a slow or huge body is cut off
/// before any handler holds a database connection for it.
async fn read_body(req: &mut Request, config: &EdgeConfig) -> Result<(), ApiError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::PayloadTooLarge,
            format!("The body is larger than {} bytes.", config.body_limit),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.body_limit as u64) {
        drain(req.take_body().into_async_read(), config.body_read_timeout);
        return Err(too_large());
    }
    let limit = config.body_limit as u64;
    let mut reader = req.take_body().into_async_read().take(limit + 1);
    let mut bytes = Vec::new();
    match tokio::time::timeout(config.body_read_timeout, reader.read_to_end(&mut bytes)).await {
        Ok(Ok(_)) if bytes.len() as u64 > limit => {
            drain(reader.into_inner(), config.body_read_timeout);
            Err(too_large())
        }
        Ok(Ok(_)) => {
            req.set_body(Body::from(bytes));
            Ok(())
        }
        Ok(Err(err)) => Err(ApiError::bad_request(format!(
            "The body could not be read: {err}"
        ))),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            Code::RequestTimeout,
            "The body was not received in time.",
        )),
    }
}

/// At most this much of a refused body is still read, and dropped.
const DRAIN_BYTES: u64 = 32 * 1024 * 1024;

/// Read the rest of a refused body in the background (at most [`DRAIN_BYTES`], for at most
/// `within`), so that a client still sending it reads the 413 instead of a connection reset
/// (closing a socket with unread data resets it). Memory stays at one small buffer.
fn drain(reader: impl AsyncRead + Unpin + Send + 'static, within: Duration) {
    tokio::spawn(async move {
        let mut rest = reader.take(DRAIN_BYTES);
        let _ =
            tokio::time::timeout(within, tokio::io::copy(&mut rest, &mut tokio::io::sink())).await;
    });
}

/// Map any error to a problem. Our own errors pass through; the framework's are given the
/// contract's codes by status.
fn problem_from_poem(err: poem::Error) -> ApiError {
    if let Some(api) = err.downcast_ref::<ApiError>() {
        return api.clone();
    }
    // A path segment that does not parse (an id that is not a UUID) names no resource: 404,
    // as for an unknown id. A query parameter or header that does not parse is named like a
    // body field.
    if err.is::<poem_openapi::error::ParsePathError>() {
        return ApiError::not_found("No such resource.");
    }
    if let Some(param) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
        tracing::debug!(parameter = param.name, reason = %param.reason, "unparseable parameter");
        return ApiError::validation(vec![crate::FieldError::new(
            param.name,
            FieldCode::InvalidValue,
            "is not a valid value for this parameter",
        )]);
    }
    let status = err.status();
    match status {
        StatusCode::BAD_REQUEST => ApiError::bad_request(err.to_string()),
        StatusCode::UNAUTHORIZED => ApiError::token_invalid(),
        // CORS refusing a disallowed Origin: a cross-site request.
        StatusCode::FORBIDDEN if err.is::<poem::error::CorsError>() => ApiError::new(
            status,
            Code::CsrfFailed,
            "Requests from this origin are not allowed.",
        ),
        StatusCode::FORBIDDEN => ApiError::forbidden("This request is not allowed."),
        StatusCode::NOT_FOUND => ApiError::not_found("No such route."),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            status,
            Code::MethodNotAllowed,
            "This method is not allowed on this route.",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            status,
            Code::PayloadTooLarge,
            "The body is larger than the configured limit.",
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            status,
            Code::UnsupportedMediaType,
            "The body must be sent with the documented content type.",
        ),
        s if s.is_server_error() => {
            tracing::error!(error = %err, status = s.as_u16(), "unhandled error");
            ApiError::internal()
        }
        s => ApiError::new(
            s,
            Code::ValidationFailed,
            s.canonical_reason().unwrap_or("Bad request").to_owned(),
        ),
    }
}

fn finish(resp: &mut Response, request_id: &str, path: &str, config: &EdgeConfig) {
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = config.allowed.allow(path)
        && let Ok(value) = HeaderValue::from_str(&allow)
    {
        resp.headers_mut().insert(header::ALLOW, value);
    }
    let headers = resp.headers_mut();
    // Whether CORS headers are present depends on the request's Origin: a shared cache must
    // not hand one origin's answer to another (401s and 403s included).
    let varies_by_origin = headers
        .get_all(header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin") || v.trim() == "*");
    if !varies_by_origin {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    // Responses carry tokens and personal data: nothing is cached unless a route says so
    // (the JWKS does).
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if config.hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    if resp.status() == StatusCode::UNAUTHORIZED
        && !resp.headers().contains_key(header::WWW_AUTHENTICATE)
    {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(BEARER_CHALLENGE),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_with_odd_characters_are_replaced() {
        assert!(sane_request_id("abc-123_x.y:z"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("a b"));
        assert!(!sane_request_id("a\nb"));
        assert!(!sane_request_id(&"a".repeat(129)));
    }
}
