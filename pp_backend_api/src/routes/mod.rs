//! The routes, a module per resource, and the answers for what no route matches.

pub mod demand;
pub mod docs;
pub mod health;
pub mod metrics;
pub mod stats;
pub mod work;

use actix_web::http::Method;
use actix_web::web;

use crate::auth::{Access, Mode};
use crate::resource::{Served, only, served};

/// The API's own routes, in the order they are matched: `/work/search` and `/work/demand` come
/// before `/work/{id}`, and `/work/demand/{message_id}` before `/work/{id}/events`.
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
        served(
            "/work/demand/{message_id}",
            Method::GET,
            Read,
            web::to(demand::get_demand),
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
            mode,
            served.route,
        ));
    }
    docs::configure(cfg, docs::openapi_json(mode, &accesses), mode);
}
