//! The middleware every request passes through, outermost first:
//!
//! 1. [`assign_request_id`]: honours a sane `x-request-id` or makes one, and echoes it back;
//!    the access log (actix's `Logger`, next) prints it.
//! 2. [`record_metrics`]: counts the request by route, method and status, and times it.
//! 3. [`catch_panics`]: a handler that panics answers a logged 500 JSON; the worker lives on.
//! 4. [`json_errors`]: the errors actix-web answers by itself (413, a malformed query, …) get
//!    the same JSON body as ours.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{Error, HttpResponse, ResponseError, web};
use futures_util::FutureExt;

use crate::error::{ErrorBody, ErrorResponse};
use crate::state::AppState;

/// The request id header, read and echoed.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id kept; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// Keeps the client's `x-request-id` when it is short printable ASCII, else makes a UUID; puts
/// it on the request (for the log and the layers inside) and on the response.
///
/// Middleware outside the router must not hold a clone of the request while it is routed (the
/// router needs it unshared), so an error passing through here keeps its own response: the one
/// error made inside, [`HandlerPanicked`], carries the id itself.
pub async fn assign_request_id(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request
        .headers()
        .get(&REQUEST_ID)
        .filter(|value| is_sane_request_id(value.as_bytes()))
        .cloned()
        .unwrap_or_else(new_request_id);
    request.headers_mut().insert(REQUEST_ID, id.clone());
    let mut response = next.call(request).await?;
    response.headers_mut().insert(REQUEST_ID, id);
    Ok(response)
}

fn is_sane_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

fn new_request_id() -> HeaderValue {
    // From the thread's userspace generator: no system call per request.
    let id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .to_string();
    // A hyphenated UUID is ASCII letters, digits and hyphens: always a valid header value.
    HeaderValue::from_str(&id).expect("a UUID is a valid header value")
}

/// Counts and times every request, labelled by its route pattern (`/work/{id}`, never the raw
/// path, so the label set stays small) or `unmatched`.
pub async fn record_metrics(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let state = request.app_data::<web::Data<AppState>>().cloned();
    let outcome = next.call(request).await;
    if let Some(state) = state {
        let status = match &outcome {
            Ok(response) => response.status(),
            Err(error) => error.as_response_error().status_code(),
        };
        state.metrics.observe_request(
            &route,
            method_label(&method),
            status.as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    outcome
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
/// connection and a restarted worker.
pub async fn catch_panics(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let request_id = request.headers().get(&REQUEST_ID).cloned();
    let method = request.method().clone();
    let path = request.path().to_owned();
    match AssertUnwindSafe(next.call(request)).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic payload".to_owned());
            log::error!("handler panicked on {method} {path}: {reason}");
            Err(HandlerPanicked { request_id }.into())
        }
    }
}

/// A handler panicked: answered as an opaque 500, with the request id.
#[derive(Debug)]
pub struct HandlerPanicked {
    request_id: Option<HeaderValue>,
}

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
        let mut response = ErrorBody::response(self.status_code(), self.to_string());
        if let Some(id) = &self.request_id {
            response.headers_mut().insert(REQUEST_ID, id.clone());
        }
        response
    }
}

/// Gives every 4xx and 5xx answer without a JSON body (those actix-web makes itself: payload too
/// large, a query it cannot parse, …) the JSON error body, keeping its status and message.
pub fn json_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|response: ServiceResponse<B>| {
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"));
        if is_json {
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
