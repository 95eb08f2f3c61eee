//! The OpenAPI 3 document, generated from the handlers' annotations, at
//! `/api-docs/openapi.json`, and Swagger UI at `/docs`, served from assets compiled into the
//! binary (no network needed).

use actix_web::{HttpResponse, http::header, web};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use crate::error::ErrorBody;
use crate::routes::{demand, health, metrics, stats, work};

pub const OPENAPI_PATH: &str = "/api-docs/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pp API",
        description = "Work to do, end to end: create works, query them, and enqueue work demands. \
                       Errors are {\"http_code\": …, \"message\": …} with that status."
    ),
    paths(
        work::create_work,
        work::get_work,
        work::search_works,
        work::list_work_events,
        demand::create_demand,
        stats::read_work_stats,
        health::healthz,
        health::readyz,
        metrics::metrics,
    ),
    components(schemas(ErrorBody, pp_lib::work::Work, pp_lib::event::Event, work::CreateWork, demand::DemandAccepted, pp_lib::db::stats::Stats, health::Health)),
    tags(
        (name = "work", description = "Works, their events, work demands, and counts of them all"),
        (name = "operations", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// Registers the document, Swagger UI, and `/docs` → `/docs/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, "/docs/"))
                .finish()
        }),
    )
    .service(SwaggerUi::new("/docs/{_:.*}").url(OPENAPI_PATH, ApiDoc::openapi()));
}
