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
    components(schemas(ErrorBody, pp_lib::work::Work, pp_lib::event::Event, pp_lib::contract::CreateWork, pp_lib::contract::DemandAccepted, pp_lib::db::stats::Stats, health::Health), responses(crate::routes::TooManyRequests)),
    tags(
        (name = "work", description = "Works, their events, work demands, and counts of them all"),
        (name = "operations", description = "Health, readiness and metrics"),
    ),
    modifiers(&WorkLinks, &MethodNotAllowed)
)]
pub struct ApiDoc;

/// The answer every path gives to a method it does not serve, as a reusable response: 405, the
/// usual error body, and `Allow` naming the method the path serves (RFC 9110).
struct MethodNotAllowed;

impl utoipa::Modify for MethodNotAllowed {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, Type};
        let response = ResponseBuilder::new()
            .description("The path does not serve this method (every path, any other method)")
            .header(
                "Allow",
                HeaderBuilder::new()
                    .schema(utoipa::openapi::schema::Object::with_type(Type::String))
                    .description(Some("The method the path serves"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .responses
            .insert("MethodNotAllowed".to_owned(), response.into());
    }
}

/// Links from the work `POST /work` returns to its `GET /work/{id}` and its events, so clients
/// (and stateful fuzzers) can follow a created work.
struct WorkLinks;

impl utoipa::Modify for WorkLinks {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::link::Link;
        let Some(created) = openapi
            .paths
            .paths
            .get_mut("/work")
            .and_then(|item| item.post.as_mut())
            .and_then(|operation| operation.responses.responses.get_mut("200"))
        else {
            return;
        };
        let RefOr::T(created) = created else {
            return;
        };
        for (name, operation_id, description) in [
            ("GetWork", "get_work", "The work just created"),
            (
                "ListWorkEvents",
                "list_work_events",
                "Its events (none until it is done)",
            ),
        ] {
            created.links.insert(
                name.to_owned(),
                RefOr::T(
                    Link::builder()
                        .operation_id(operation_id)
                        .parameter("id", "$response.body#/id")
                        .description(description)
                        .build(),
                ),
            );
        }
    }
}

/// Registers the document, Swagger UI, and `/docs` → `/docs/`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let document = web::Bytes::from(openapi_json());
    cfg.service(crate::routes::only(
        OPENAPI_PATH,
        actix_web::http::Method::GET,
        crate::rate_limit::Traffic::Unlimited,
        web::to(move || {
            let document = document.clone();
            async move {
                HttpResponse::Ok()
                    .content_type("application/json")
                    .body(document)
            }
        }),
    ))
    .route(
        "/docs",
        web::get().to(|| async {
            HttpResponse::PermanentRedirect()
                .insert_header((header::LOCATION, "/docs/"))
                .finish()
        }),
    )
    .service(SwaggerUi::new("/docs/{_:.*}").config(utoipa_swagger_ui::Config::new([OPENAPI_PATH])));
}

/// The OpenAPI document as served. utoipa 5.5 writes a link's fields in snake case
/// (`operation_id`), where OpenAPI names them in camel case (`operationId`); they are renamed
/// here, so tools that follow links find their target.
pub fn openapi_json() -> String {
    let mut api = ApiDoc::openapi();
    api.merge(crate::dashboard::DashboardDoc::openapi());
    let mut document = serde_json::to_value(api)
        .expect("the OpenAPI document is plain data and always serialises");
    if let Some(paths) = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    {
        let responses = paths
            .values_mut()
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .filter_map(|operation| operation.get_mut("responses"))
            .filter_map(serde_json::Value::as_object_mut)
            .flat_map(|responses| responses.values_mut());
        for response in responses {
            let Some(links) = response
                .get_mut("links")
                .and_then(serde_json::Value::as_object_mut)
            else {
                continue;
            };
            for link in links
                .values_mut()
                .filter_map(serde_json::Value::as_object_mut)
            {
                for (snake, camel) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(value) = link.remove(snake) {
                        link.insert(camel.to_owned(), value);
                    }
                }
            }
        }
    }
    document.to_string()
}
