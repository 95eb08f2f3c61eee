//! The routes, a module per resource, and the answers for what no route matches.

pub mod demand;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod stats;
pub mod work;

use actix_web::body::BoxBody;
use actix_web::dev::HttpServiceFactory;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpRequest, HttpResponse, Route, web};

use crate::auth::guard::guard;
use crate::auth::{Access, Mode};
use crate::error::{ErrorBody, ErrorResponse};
use crate::middleware::{RouteLabel, catch_panics};
use crate::rate_limit::limit_rate;

/// One route: its path, its method, who may use it, and its handler.
pub struct Served {
    pub path: &'static str,
    pub method: Method,
    pub access: Access,
    pub route: Route,
}

/// Shorthand for a [`Served`].
pub fn served(path: &'static str, method: Method, access: Access, route: Route) -> Served {
    Served {
        path,
        method,
        access,
        route,
    }
}

/// The API's own routes, in the order they are matched: `/work/search` and `/work/demand` come
/// before `/work/{id}`.
fn api_routes() -> Vec<Served> {
    use Access::{Open, Read, Write};
    vec![
        served("/work", Method::POST, Write, web::to(work::create_work)),
        served(
            "/work/search",
            Method::GET,
            Read,
            web::to(work::search_works),
        ),
        served(
            "/work/demand",
            Method::POST,
            Write,
            web::to(demand::create_demand),
        ),
        served("/work/{id}", Method::GET, Read, web::to(work::get_work)),
        served(
            "/work/{id}/events",
            Method::GET,
            Read,
            web::to(work::list_work_events),
        ),
        served("/stats", Method::GET, Read, web::to(stats::read_work_stats)),
        served("/healthz", Method::GET, Open, web::to(health::healthz)),
        served("/readyz", Method::GET, Open, web::to(health::readyz)),
        served("/metrics", Method::GET, Open, web::to(metrics::metrics)),
    ]
}

/// Registers every route, the dashboard's too, and the OpenAPI document, which says what
/// `mode` asks of each route (from the same table the guard is given).
pub fn configure(cfg: &mut web::ServiceConfig, mode: Mode) {
    let mut table = api_routes();
    table.extend(crate::dashboard::routes());
    let accesses: Vec<(&'static str, Method, Access)> = table
        .iter()
        .map(|served| (served.path, served.method.clone(), served.access))
        .collect();
    for served in table {
        cfg.service(only(
            served.path,
            served.method,
            served.access,
            served.route,
        ));
    }
    docs::configure(cfg, docs::openapi_json(mode, &accesses));
}

/// A resource that serves `route` for `method` and answers 405, with the `Allow` header RFC 9110
/// asks for, to every other method. Its requests pass the [`guard`] (who may, given `access`),
/// then count against the rate limits the access is subject to, and its handler's panics are
/// answered 500 ([`catch_panics`]).
pub fn only(
    path: &'static str,
    method: Method,
    access: Access,
    route: Route,
) -> impl HttpServiceFactory + use<> {
    let traffic = access.traffic(&method);
    let allow =
        HeaderValue::from_str(method.as_str()).expect("a method name is a valid header value");
    web::resource(path)
        .app_data(RouteLabel(path))
        .route(route.method(method))
        .default_service(web::to(move |request: HttpRequest| {
            method_not_allowed(request, allow.clone())
        }))
        .wrap(from_fn(catch_panics))
        .wrap(from_fn(move |request, next: Next<BoxBody>| {
            limit_rate(traffic, request, next)
        }))
        .wrap(from_fn(move |request, next: Next<BoxBody>| {
            guard(access, request, next)
        }))
}

/// 429: the client's rate limit is spent (only when `PP_RATE_LIMIT` is set).
#[derive(utoipa::ToResponse)]
#[response(
    description = "The client's rate limit is spent (only when rate limits are on)",
    headers(
        ("Retry-After" = u32, description = "Seconds until a request would be allowed"),
        ("RateLimit-Policy" = String, description = "The client's quota, e.g. `\"pp\";q=100;w=2`"),
        ("RateLimit" = String, description = "What is left: `\"pp\";r=0;t=<seconds until whole again>`"),
    )
)]
#[allow(dead_code)] // Read by the document's generator only.
pub struct TooManyRequests(#[to_schema] ErrorBody);

/// 404 for a path no route has.
pub async fn not_found(request: HttpRequest) -> HttpResponse {
    ErrorBody::response(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", request.method(), request.path()),
    )
}

/// 405 for a known path asked with a method it does not serve; `Allow` names the one it does.
async fn method_not_allowed(request: HttpRequest, allow: HeaderValue) -> HttpResponse {
    let mut response = ErrorBody::response(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", request.method(), request.path()),
    );
    response.headers_mut().insert(header::ALLOW, allow);
    response
}
