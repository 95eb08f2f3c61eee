//! The middleware every request passes through, outermost first:
//!
//! 1. [`observe`]: honours a sane `x-request-id` or makes one and echoes it back, counts and
//!    times the request by route, method and status, writes the access log line, and puts the
//!    security headers on every answer (`nosniff`, no referrer, no framing, and no caching of
//!    the dashboard's JSON).
//! 2. [`json_errors`]: the errors actix-web answers by itself (413, a malformed query, …) get
//!    the same JSON body as ours.
//!
//! and, on each resource (inside the router, where the route is known), one middleware,
//! [`crate::resource::only`]'s gate:
//!
//! 3. the guard ([`crate::auth::guard::admit`]): refuses cross-site changes, finds who is
//!    asking, and lets them through when the route allows them (401, 403, 429 otherwise);
//! 4. the client's quota ([`crate::rate_limit::charge_request`]);
//! 5. [`catch_panics`]: a handler that panics answers a logged 500 JSON; the worker lives on.
//!
//! The route's label is read after routing, when actix-web finds it by the resource that served
//! the request; before routing it could only be found by matching the path against every
//! pattern again. Every layer here is on the path of every request, so each does no more than
//! it must: no text is formatted for a log line that is filtered out.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{Error, HttpResponse, ResponseError, web};
use futures_util::FutureExt;

use crate::error::{ErrorBody, ErrorResponse};
use crate::state::AppState;

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The log target of the access log: one line per request at `info`
/// (`RUST_LOG=pp_backend_api::access=warn` turns it off).
pub const ACCESS_LOG: &str = "pp_backend_api::access";

/// Longest client-supplied request id kept; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Keeps the client's `x-request-id` when it is short printable ASCII, else makes a UUID, and
/// puts it on the request (for the layers inside) and on the response. Counts and times the
/// request, labelled by its route pattern (`/work/{id}`, never the raw path, so the label set
/// stays small) or `unmatched`, and logs it: request id, request line, status, body bytes,
/// milliseconds.
///
/// It holds no clone of the request while it is routed (the router needs it unshared): what the
/// log line needs of the request is copied first, and only when the line will be written.
pub async fn observe(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| is_sane_request_id(value.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let method = request.method().clone();
    let request_line = log::log_enabled!(target: ACCESS_LOG, log::Level::Info)
        .then(|| (request.uri().clone(), request.version()));
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let dashboard_json = request.path().starts_with("/dashboard/api/");
    let outcome = next.call(request).await;
    let elapsed = started.elapsed();
    let (status, route) = match &outcome {
        Ok(response) => (response.status(), route_label(response.request())),
        Err(error) => (error.as_response_error().status_code(), None),
    };
    if let Some(state) = state {
        state.metrics.observe_request(
            route.as_deref().unwrap_or("unmatched"),
            method_label(&method),
            status.as_u16(),
            elapsed.as_secs_f64(),
        );
    }
    if let Some((uri, version)) = request_line {
        let bytes = match &outcome {
            Ok(response) => match response.response().body().size() {
                BodySize::Sized(bytes) => bytes.to_string(),
                BodySize::None | BodySize::Stream => "-".to_owned(),
            },
            Err(_) => "-".to_owned(),
        };
        log::info!(
            target: ACCESS_LOG,
            "{} \"{method} {uri} {version:?}\" {} {bytes} {:.3}ms",
            String::from_utf8_lossy(id.as_bytes()),
            status.as_u16(),
            elapsed.as_secs_f64() * 1000.0
        );
    }
    let mut response = outcome?;
    let headers = response.headers_mut();
    headers.insert(REQUEST_ID, id);
    add_security_headers(headers, dashboard_json);
    Ok(response)
}

/// Puts the headers every answer carries: `X-Content-Type-Options: nosniff` (a browser takes
/// a body for what its type says, never a guess), `Referrer-Policy: no-referrer` (no address of
/// this API leaks to another site), `X-Frame-Options: DENY` (no page frames it; the dashboard's
/// Content-Security-Policy says `frame-ancestors 'none'` too); and `Cache-Control: no-store` on
/// the dashboard's JSON, which is per person and changes every second, where the handler has not
/// said otherwise. [`observe`] calls it on every answer (a middleware of its own would cost
/// every request a layer).
fn add_security_headers(headers: &mut HeaderMap, dashboard_json: bool) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if dashboard_json && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// The route pattern a resource serves, put on it by [`crate::resource::only`] so the label costs
/// no lookup and no allocation.
#[derive(Debug, Clone, Copy)]
pub struct RouteLabel(pub &'static str);

/// The label of the route that served `request`: its [`RouteLabel`], else (the routes made by
/// a library, the unmatched) the pattern actix-web finds.
fn route_label(request: &actix_web::HttpRequest) -> Option<std::borrow::Cow<'static, str>> {
    match request.app_data::<RouteLabel>() {
        Some(RouteLabel(label)) => Some(std::borrow::Cow::Borrowed(label)),
        None => request.match_pattern().map(std::borrow::Cow::Owned),
    }
}

fn is_sane_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    // From the thread's userspace generator: no system call per request.
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0_u8; uuid::fmt::Hyphenated::LENGTH];
    // A hyphenated UUID is ASCII letters, digits and hyphens: always a valid header value.
    HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
        .expect("a UUID is a valid header value")
}

/// Methods as a closed set of labels: a client inventing methods cannot grow the metrics.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    const KNOWN: [(Method, &str); 7] = [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
    ];
    KNOWN
        .iter()
        .find(|(known, _)| known == method)
        .map_or("other", |(_, label)| label)
}

/// Turns a panic in a handler into a logged 500 with a JSON body, instead of a dropped
/// connection and a restarted worker. It wraps a resource, not the app: it keeps a handle on the
/// request to answer with, which only a layer inside the router may hold.
pub async fn catch_panics(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse, Error> {
    let http_request = request.request().clone();
    match AssertUnwindSafe(next.call(request)).catch_unwind().await {
        Ok(outcome) => outcome.map(ServiceResponse::map_into_boxed_body),
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".to_owned());
            log::error!(
                "handler panicked on {} {}: {reason}",
                http_request.method(),
                http_request.path()
            );
            let response = HandlerPanicked.error_response();
            Ok(ServiceResponse::new(http_request, response))
        }
    }
}

/// A handler panicked: answered as an opaque 500.
#[derive(Debug)]
pub struct HandlerPanicked;

impl fmt::Display for HandlerPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("internal error")
    }
}

impl ResponseError for HandlerPanicked {
    fn status_code(&self) -> StatusCode {
        StatusCode::INTERNAL_SERVER_ERROR
    }

    fn error_response(&self) -> HttpResponse {
        ErrorBody::response(self.status_code(), self.to_string())
    }
}

/// Gives every 4xx and 5xx answer without a JSON body (those actix-web makes itself: payload too
/// large, a query it cannot parse, …) the JSON error body, keeping its status and message. An
/// HTML page is kept: it is the login form, saying why a login failed, to a browser.
pub fn json_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|response: ServiceResponse<B>| {
        let is_ours = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| {
                value.starts_with("application/json") || value.starts_with("text/html")
            });
        if is_ours {
            return Ok(ErrorHandlerResponse::Response(
                response.map_into_left_body(),
            ));
        }
        let status = response.status();
        let message = if status.is_server_error() {
            // What failed inside is for the log, not for the client.
            "internal error".to_owned()
        } else {
            response
                .response()
                .error()
                .map(ToString::to_string)
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_lowercase())
        };
        let (request, _) = response.into_parts();
        let json = ErrorBody::response(status, message);
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(request, json).map_into_right_body(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert!(is_sane_request_id(b"abc-123"));
        assert!(is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_sane_request_id(b""));
        assert!(!is_sane_request_id(b"has space"));
        assert!(!is_sane_request_id("caf\u{e9}".as_bytes()));
        assert!(!is_sane_request_id(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
    }
}
