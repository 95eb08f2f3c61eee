//! The routes, a module per resource, and the answers for what no route matches.

pub mod demand;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod work;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::ErrorBody;

/// Registers every route. Order matters where patterns overlap: `/work/search` and
/// `/work/demand` come before `/work/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/work")
            .route(web::post().to(work::create_work))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/work/search")
            .route(web::get().to(work::search_works))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/work/demand")
            .route(web::post().to(demand::create_demand))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/work/{id}")
            .route(web::get().to(work::get_work))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/work/{id}/events")
            .route(web::get().to(work::list_work_events))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/healthz")
            .route(web::get().to(health::healthz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/readyz")
            .route(web::get().to(health::readyz))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(metrics::metrics))
            .default_service(web::to(method_not_allowed)),
    );
    docs::configure(cfg);
}

/// 404 for a path no route has.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    ErrorBody::response(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.path()),
    )
}

/// 405 for a known path asked with a method it does not serve.
async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    ErrorBody::response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", request.method(), request.path()),
    )
}
