//! The routes, a module per resource, and the answers for what no route matches.

pub mod demand;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod stats;
pub mod work;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, Resource, Route, web};

use crate::error::ErrorBody;

/// Registers every route. Order matters where patterns overlap: `/work/search` and
/// `/work/demand` come before `/work/{id}`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(only("/work", web::post().to(work::create_work)))
        .service(only("/work/search", web::get().to(work::search_works)))
        .service(only("/work/demand", web::post().to(demand::create_demand)))
        .service(only("/work/{id}", web::get().to(work::get_work)))
        .service(only(
            "/work/{id}/events",
            web::get().to(work::list_work_events),
        ))
        .service(only("/stats", web::get().to(stats::read_work_stats)))
        .service(only("/healthz", web::get().to(health::healthz)))
        .service(only("/readyz", web::get().to(health::readyz)))
        .service(only("/metrics", web::get().to(metrics::metrics)));
    docs::configure(cfg);
}

/// A resource that serves `route` and answers 405 to every other method.
fn only(path: &str, route: Route) -> Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
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
