//! `GET /healthz` (the process answers) and `GET /readyz` (it can serve: the database answers;
//! the broker and the cache, when configured, are reported but never required).

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
    /// Readiness only, when this process relays the outbox: `ok` while its connection to
    /// RabbitMQ is up, `down` otherwise (demands are still accepted; they wait in the outbox).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "ok")]
    pub broker: Option<String>,
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok".to_owned(),
        cache: None,
        broker: None,
    })
}

/// Readiness: the database answers a query. Redis and RabbitMQ are reported, never required:
/// without them the API still serves (from PostgreSQL; demands wait in the outbox).
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready; `cache` and `broker` say how Redis and RabbitMQ are, when configured", body = Health),
        (status = 503, description = "The database does not answer; the message also says how Redis and RabbitMQ are", body = ErrorBody),
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
    let cache = state.cache.is_enabled().then(|| {
        if state.cache.is_degraded() {
            "degraded"
        } else {
            "ok"
        }
    });
    // The relay's view of its connection, kept current by its rounds (every outbox interval).
    let broker = state.relaying.then(|| {
        if state.metrics.outbox_broker_connected.get() == 1 {
            "ok"
        } else {
            "down"
        }
    });
    let database_error = match outcome {
        Ok(Ok(())) => {
            return HttpResponse::Ok().json(Health {
                status: "ready".to_owned(),
                cache: cache.map(str::to_owned),
                broker: broker.map(str::to_owned),
            });
        }
        Ok(Err(reason)) => {
            log::warn!("not ready: {reason}");
            "database unavailable"
        }
        Err(error) => {
            log::error!("readiness check did not finish: {error}");
            "database unavailable"
        }
    };
    let others: Vec<String> = [("cache", cache), ("broker", broker)]
        .into_iter()
        .filter_map(|(name, state)| state.map(|state| format!("{name} {state}")))
        .collect();
    let message = if others.is_empty() {
        database_error.to_owned()
    } else {
        format!("{database_error} ({})", others.join(", "))
    };
    ErrorBody::response(StatusCode::SERVICE_UNAVAILABLE, message)
}
