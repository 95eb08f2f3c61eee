//! `GET /stats`: the system at a glance — pending and done works, events, the works done in the
//! last hour, and the API works older than the sweeper's window — read by `pp_lib::db::stats`,
//! which `cli_01 stats --via db` shares, so both answer the same.

use actix_web::{HttpResponse, web};
use pp_lib::db::stats::{Stats, read_stats};

use crate::dashboard::Dashboard;
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Counts of works and events, and the last hour's throughput.
#[utoipa::path(
    get,
    path = "/stats",
    tag = "work",
    responses(
        (status = 200, description = "The counts, from one snapshot of the database", body = Stats),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn read_work_stats(
    state: web::Data<AppState>,
    dashboard: web::Data<Dashboard>,
) -> Result<HttpResponse, ApiError> {
    // The sweeper's window (`PP_SWEEP_WINDOW`), which the dashboard's settings carry.
    let sweep_window = dashboard.sweep_window;
    let stats = state
        .run_db(move |conn| Ok(read_stats(conn, sweep_window)?))
        .await?;
    Ok(HttpResponse::Ok().json(stats))
}
