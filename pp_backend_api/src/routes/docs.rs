//! The OpenAPI 3 document, generated from the handlers' annotations, at
//! `/api-docs/openapi.json`, and Swagger UI at `/docs`, served from assets compiled into the
//! binary (no network needed).

use actix_web::{HttpResponse, http::header, web};
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

use actix_web::http::Method;
use serde_json::{Value, json};

use crate::auth::{Access, Mode};
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
        demand::get_demand,
        stats::read_work_stats,
        health::healthz,
        health::readyz,
        metrics::metrics,
    ),
    components(schemas(ErrorBody, pp_lib::work::Work, pp_lib::event::Event, pp_lib::contract::CreateWork, pp_lib::contract::DemandAccepted, pp_lib::contract::DemandStatus, pp_lib::contract::DemandState, pp_lib::db::stats::Stats, health::Health), responses(crate::rate_limit::TooManyRequests)),
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

/// Registers `document`, Swagger UI, and `/docs` → `/docs/`, guarded under the API's `mode`.
pub fn configure(cfg: &mut web::ServiceConfig, document: String, mode: Mode) {
    let document = web::Bytes::from(document);
    cfg.service(crate::resource::only(
        OPENAPI_PATH,
        Method::GET,
        Access::Read,
        mode,
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

/// The OpenAPI document as served by an API in `mode`, whose routes have the `accesses` given
/// (the table the guard is given). Each operation that needs an identity in this mode names the
/// schemes that give one, with the scope it needs, and answers 401, 403 and 429 as the guard
/// does; one that takes an identity without needing it lists "none" among its schemes.
///
/// utoipa 5.5 writes a link's fields in snake case (`operation_id`), where OpenAPI names them in
/// camel case (`operationId`); they are renamed here, so tools that follow links find their
/// target.
pub fn openapi_json(mode: Mode, accesses: &[(&'static str, Method, Access)]) -> String {
    let mut api = ApiDoc::openapi();
    api.merge(crate::dashboard::DashboardDoc::openapi());
    let mut document = serde_json::to_value(api)
        .expect("the OpenAPI document is plain data and always serialises");
    declare_security(&mut document, mode, accesses);
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        let responses = paths
            .values_mut()
            .filter_map(Value::as_object_mut)
            .flat_map(|item| item.values_mut())
            .filter_map(|operation| operation.get_mut("responses"))
            .filter_map(Value::as_object_mut)
            .flat_map(|responses| responses.values_mut());
        for response in responses {
            let Some(links) = response.get_mut("links").and_then(Value::as_object_mut) else {
                continue;
            };
            for link in links.values_mut().filter_map(Value::as_object_mut) {
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

/// The schemes that give an identity, as OpenAPI security schemes.
fn security_schemes() -> Value {
    json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ppk_… (pp_storage keys create)",
            "description": "An API key: Authorization: Bearer <token>"
        },
        "api_key": {
            "type": "apiKey",
            "in": "header",
            "name": "X-Api-Key",
            "description": "The same API key, in X-Api-Key"
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": crate::auth::credentials::SESSION_COOKIE,
            "description": "A dashboard login (POST /dashboard/api/login)"
        },
        "admin_token": {
            "type": "apiKey",
            "in": "header",
            "name": "X-PP-Admin-Token",
            "description": "PP_ADMIN_TOKEN, the break-glass operator"
        }
    })
}

/// Declares the schemes, and on each operation what `mode` asks of it.
fn declare_security(document: &mut Value, mode: Mode, accesses: &[(&'static str, Method, Access)]) {
    let Some(components) = document
        .get_mut("components")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let schemes = components
        .entry("securitySchemes")
        .or_insert_with(|| json!({}));
    if let (Some(schemes), Value::Object(ours)) = (schemes.as_object_mut(), security_schemes()) {
        schemes.extend(ours);
    }
    let responses = components.entry("responses").or_insert_with(|| json!({}));
    if let Some(responses) = responses.as_object_mut() {
        responses.insert(
            "NeedsIdentity".to_owned(),
            json!({
                "description": "No identity, or credentials that authenticate no one (unknown, \
                                revoked or expired key, ended session)",
                "headers": {"WWW-Authenticate": {
                    "description": "Bearer realm=\"pp\"[, error=\"invalid_token\"]",
                    "schema": {"type": "string"}
                }},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            }),
        );
        responses.insert(
            "NotAllowed".to_owned(),
            json!({
                "description": "The identity lacks the scope (error=\"insufficient_scope\"), or \
                                a change was asked from another site",
                "headers": {"WWW-Authenticate": {
                    "description": "Bearer realm=\"pp\", error=\"insufficient_scope\", scope=\"…\"",
                    "schema": {"type": "string"}
                }},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
            }),
        );
    }
    for (path, method, access) in accesses {
        let Some(operation) = document
            .pointer_mut(&format!(
                "/paths/{}/{}",
                path.replace('~', "~0").replace('/', "~1"),
                method.as_str().to_lowercase()
            ))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let responses = operation.entry("responses").or_insert_with(|| json!({}));
        if *method != Method::GET
            && let Some(responses) = responses.as_object_mut()
        {
            // Every change is refused from another site, in every mode.
            responses
                .entry("403")
                .or_insert_with(|| json!({"$ref": "#/components/responses/NotAllowed"}));
        }
        if mode == Mode::Off || *access == Access::Open {
            continue;
        }
        let scopes = access.needs(mode).map(|scope| vec![scope.as_str()]);
        let mut security = Vec::new();
        if scopes.is_none() {
            security.push(json!({}));
        }
        let scope = scopes.unwrap_or_default();
        security.extend([
            json!({"bearer": scope}),
            json!({"api_key": scope}),
            json!({"session": []}),
            json!({"admin_token": []}),
        ]);
        operation.insert("security".to_owned(), Value::Array(security));
        let responses = operation.entry("responses").or_insert_with(|| json!({}));
        if let Some(responses) = responses.as_object_mut() {
            for (status, name) in [
                ("401", "NeedsIdentity"),
                ("403", "NotAllowed"),
                ("429", "TooManyRequests"),
            ] {
                responses.insert(
                    status.to_owned(),
                    json!({"$ref": format!("#/components/responses/{name}")}),
                );
            }
        }
    }
}
