//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve: the database answers).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use pp_lib::db::ping;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorBody, ErrorResponse};
use crate::state::AppState;

/// How long readiness waits for a database connection: a probe must answer fast.
const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// A health answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
    /// Readiness only, when Redis is configured: `ok`, or `degraded` while Redis does not answer
    /// (works are then read from PostgreSQL and rate limits are open; the API stays ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    pub cache: Option<String>,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".to_owned(),
        cache: None,
    })
}

/// Readiness: the database answers a query. Redis is reported, never required.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let pool = state.pool.clone();
    let outcome = web::block(move || -> Result<(), String> {
        let mut conn = pool
            .get_timeout(READINESS_TIMEOUT)
            .map_err(|error| pp_lib::Error::from(error).to_string())?;
        ping(&mut conn).map_err(|error| error.to_string())
    })
    .await;
    match outcome {
        Ok(Ok(())) => HttpResponse::Ok().json(Health {
            status: "ready".to_owned(),
            cache: state.cache.is_enabled().then(|| {
                if state.cache.is_degraded() {
                    "degraded"
                } else {
                    "ok"
                }
                .to_owned()
            }),
        }),
        Ok(Err(reason)) => {
            log::warn!("not ready: {reason}");
            ErrorBody::response(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        Err(error) => {
            log::error!("readiness check did not finish: {error}");
            ErrorBody::response(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}
