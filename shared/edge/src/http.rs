//! Assembling a service's HTTP surface: its API, `/openapi.json`, `/docs`, CORS and the edge.

use std::time::Duration;

use poem::endpoint::BoxEndpoint;
use poem::http::{StatusCode, header};
use poem::middleware::{CatchPanic, Cors};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, Route};
use poem_openapi::{OpenApi, OpenApiService};

use crate::allow::AllowedMethods;
use crate::middleware::{Edge, EdgeConfig};
use crate::problem::ApiError;
use shared_infra::config::HttpSettings;

/// Headers a browser may send cross-origin, and read from our responses.
const ALLOW_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "x-request-id",
];
const EXPOSE_HEADERS: &[&str] = &[
    "etag",
    "location",
    "retry-after",
    "ratelimit",
    "ratelimit-policy",
    "x-request-id",
];

/// Mount `api` at `/` with its spec at `/openapi.json` and a browsable UI at `/docs`, behind
/// CORS (only when origins are configured: an empty allowlist means no cross-origin access,
/// never "any origin") and the edge middleware. `inner` may wrap the routes in middleware
/// of the service's own, inside the edge (so after the body limit and with errors still
/// unconverted).
pub fn mount<T, F, E>(
    api: OpenApiService<T, ()>,
    settings: &HttpSettings,
    inner: F,
) -> impl Endpoint + use<T, F, E>
where
    T: OpenApi + 'static,
    F: FnOnce(BoxEndpoint<'static>) -> E,
    E: Endpoint + 'static,
{
    // Install the metrics recorder before the first request records anything.
    shared_infra::metrics::handle();
    let document = crate::openapi::exact(&api.spec());
    let allowed = AllowedMethods::from_spec(
        &document,
        &[("/openapi.json", &["GET"]), ("/docs", &["GET"])],
    );
    let spec = poem::endpoint::make_sync(move |_| {
        Response::builder()
            .content_type("application/json")
            .body(document.clone())
    });
    let docs = api.swagger_ui();
    let cors = Cors::new()
        .allow_origins(settings.cors_allowed_origins.iter().map(String::as_str))
        .allow_credentials(true)
        .allow_methods(["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"])
        .allow_headers(ALLOW_HEADERS.iter().copied())
        .expose_headers(EXPOSE_HEADERS.iter().copied())
        .max_age(600);
    let has_cors = !settings.cors_allowed_origins.is_empty();
    let routes = Route::new()
        .at("/openapi.json", spec)
        .nest("/docs", docs)
        .nest("/", api);
    inner(routes.around(one_authorization).boxed())
        .with(CatchPanic::new().with_handler(panicked))
        .with_if(has_cors, cors)
        .with(Edge::new(EdgeConfig {
            body_limit: settings.body_limit_bytes,
            body_read_timeout: Duration::from_secs(settings.body_read_timeout_secs),
            request_timeout: Duration::from_secs(settings.request_timeout_secs),
            trusted_proxies: settings.trusted_proxies.clone(),
            forwarded_header: settings.forwarded_header.clone(),
            allowed: std::sync::Arc::new(allowed),
            hsts: settings.hsts,
        }))
}

/// A request with more than one `Authorization` header is refused (400) before any route
/// reads one: which of them an intermediary forwards, or a framework reads, differs, so
/// serving it would let a request be judged on a header other than the one it is served by.
/// Inside the services' own wrappers, so that `/oauth/*` answers it in its own format.
async fn one_authorization<E: Endpoint>(
    ep: std::sync::Arc<E>,
    req: Request,
) -> poem::Result<Response> {
    if req
        .headers()
        .get_all(header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(poem::Error::from_string(
            "Send one Authorization header, not several.",
            StatusCode::BAD_REQUEST,
        ));
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// A handler that panicked answers the bare 500 problem (inside the edge and CORS, so with
/// the request id, security and CORS headers) instead of dropping the connection; the panic is logged.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    tracing::error!(panic = message, "a handler panicked");
    metrics::counter!("http_handler_panics_total").increment(1);
    ApiError::internal().into_response()
}

#[cfg(test)]
mod tests {
    use poem::http::Method;
    use poem_openapi::payload::PlainText;

    use super::*;

    struct Panics;

    #[poem_openapi::OpenApi]
    impl Panics {
        #[oai(path = "/boom", method = "get")]
        async fn boom(&self) -> PlainText<&'static str> {
            panic!("a bug")
        }
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_the_500_problem() {
        let ep = mount(
            OpenApiService::new(Panics, "t", "1"),
            &HttpSettings::default(),
            |routes| routes,
        );
        let req = Request::builder()
            .method(Method::GET)
            .uri_str("/boom")
            .finish();
        let resp = ep.call(req).await.expect("answered").into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            crate::problem::PROBLEM_JSON
        );
        assert!(resp.headers().contains_key("x-request-id"));
        let body: serde_json::Value =
            serde_json::from_slice(&resp.into_body().into_bytes().await.unwrap()).unwrap();
        assert_eq!(body["code"], "INTERNAL");
        assert!(
            !body.to_string().contains("a bug"),
            "the panic stays in the log"
        );
    }
}
