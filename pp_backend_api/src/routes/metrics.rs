//! `GET /metrics`: Prometheus text format.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};

use crate::error::{ErrorBody, ErrorResponse};
use crate::state::AppState;

/// The API's metrics: requests by route, method and status; latency; the database pool; the
/// requests waiting for works.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)))]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.metrics.render(&state.pool, state.waiters.count()) {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(error) => {
            log::error!("cannot render metrics: {error}");
            ErrorBody::response(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
