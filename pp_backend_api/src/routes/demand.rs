//! `POST /work/demand`: accept a work demand durably, for the queue.
//!
//! The demand is committed to the `demand_outbox` table, under a fresh UUID that becomes its
//! AMQP message id, and the answer is 202 with that id. Nothing here talks to the broker, so a
//! demand is accepted, and never lost, while RabbitMQ is down: the outbox relay publishes it.

use actix_web::{HttpResponse, web};
use pp_lib::contract::{CreateWork, DemandAccepted, accept_demand};
use pp_lib::demand::WorkDemand;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// Accepts a work demand for the queue.
///
/// `add_up_to` comes from the optional JSON body, else it is random in 1..100. The demand is
/// stored durably before the answer, and published to RabbitMQ by the outbox relay.
#[utoipa::path(
    post,
    path = "/work/demand",
    tag = "work",
    request_body(content = Option<CreateWork>, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: it will be published with this message id", body = DemandAccepted,
         headers(
            ("RateLimit-Policy" = String, description = "When rate limits are on: the client's quota, e.g. `\"pp\";q=100;w=2` (q requests per w seconds)"),
            ("RateLimit" = String, description = "When rate limits are on: what is left, e.g. `\"pp\";r=42;t=1` (r requests now, whole again in t seconds)"),
         )),
        (status = 400, description = "Malformed body or add_up_to out of range", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn create_demand(
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let demand = CreateWork::parse(&body)?.unwrap_or_else(WorkDemand::random);
    let accepted: DemandAccepted = state
        .run_db(move |conn| accept_demand(conn, &demand))
        .await?;
    state.outbox_wakeup.notify_one();
    Ok(HttpResponse::Accepted().json(accepted))
}
