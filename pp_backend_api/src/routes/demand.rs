//! `POST /work/demand`: accept a work demand durably, for the queue; `GET
//! /work/demand/{message_id}`: follow it to its work.
//!
//! The demand is committed to the `demand_outbox` table, under a fresh UUID that becomes its
//! AMQP message id, and the answer is 202 with that id and, in `Location`, where to follow it.
//! Nothing here talks to the broker, so a demand is accepted, and never lost, while RabbitMQ is
//! down: the outbox relay publishes it.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use pp_lib::contract::{
    CreateWork, DemandAccepted, DemandProgress, DemandStatus, accept_demand, follow_demand,
    parse_message_id,
};
use pp_lib::demand::WorkDemand;
use pp_lib::work::Work;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::waiters::{Awaited, PREFERENCE_APPLIED, applied, wait_until};

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
            ("Location" = String, description = "Where to follow the demand: `/work/demand/{message_id}`"),
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
    state.demands_accepted();
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, demand_path(&accepted)))
        .json(accepted))
}

/// Where a demand is followed.
fn demand_path(accepted: &DemandAccepted) -> String {
    format!("/work/demand/{}", accepted.message_id)
}

/// Follows a demand to its work.
///
/// 200 with the work once a consumer has recorded it (`Content-Location` names the work); 202
/// with where the demand is before that: `outbox` (accepted, waiting for the relay) or
/// `published` (the broker has it, waiting for a consumer). A demand is known by its outbox row
/// until `PP_OUTBOX_RETENTION` after it was published, and by its work from then on.
#[utoipa::path(
    get,
    path = "/work/demand/{message_id}",
    tag = "work",
    params(
        ("message_id" = uuid::Uuid, Path, description = "The message id `POST /work/demand` answered"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (RFC 7240): answer as soon as the demand's work is recorded, or after N seconds (at most PP_WAIT_MAX) with where the demand is"),
    ),
    responses(
        (status = 200, description = "The demand's work, recorded", body = Work,
         headers(
            ("Content-Location" = String, description = "The work's own path: `/work/{id}`"),
            ("Preference-Applied" = String, description = "`wait=N` when the request waited (N as honoured)"),
         )),
        (status = 202, description = "Not recorded yet: where the demand is", body = DemandStatus,
         headers(("Preference-Applied" = String, description = "`wait=N` when the request waited (N as honoured)"))),
        (status = 400, description = "The message id is not a UUID", body = ErrorBody),
        (status = 404, description = "No demand has this message id (or its outbox row has expired and no work was recorded for it)", body = ErrorBody),
        (status = 503, description = "Database unavailable or too slow, or as many requests wait (Prefer: wait) as PP_WAITERS_MAX allows", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn get_demand(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let message_id = parse_message_id(&path)?;
    let look = || async {
        let progress = state
            .run_db(move |conn| follow_demand(conn, message_id))
            .await?;
        let recorded = matches!(progress, DemandProgress::Recorded(_));
        Ok((progress, recorded))
    };
    let wait = state.preferred_wait(&request);
    let progress = match wait {
        Some(wait) => wait_until(&state.waiters, Awaited::Demand(message_id), wait, look).await?,
        None => look().await?.0,
    };
    let mut answer = match &progress {
        DemandProgress::Recorded(work) => {
            let mut answer = HttpResponse::Ok();
            answer.insert_header((header::CONTENT_LOCATION, work_path(work)));
            answer
        }
        DemandProgress::Waiting(_) => HttpResponse::Accepted(),
    };
    if let Some(wait) = wait {
        answer
            .insert_header((PREFERENCE_APPLIED, applied(wait.as_secs())))
            .insert_header((header::VARY, "Prefer"));
    }
    Ok(match progress {
        DemandProgress::Recorded(work) => answer.json(work),
        DemandProgress::Waiting(status) => answer.json(status),
    })
}

/// A work's own path.
fn work_path(work: &Work) -> String {
    format!("/work/{}", work.id)
}
