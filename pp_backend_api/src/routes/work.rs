//! `/work`: create a work, get one, search them, list a work's events.

use std::time::Duration;

use actix_web::http::header::{self, ContentType, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use pp_lib::contract::search::SearchParams;
use pp_lib::contract::{
    CreateWork, list_work_events as work_events, parse_work_id, work_not_found,
};
use pp_lib::db::idempotency::{IdempotentCreation, MAX_KEY_LEN, create_work_once};
use pp_lib::demand::WorkDemand;
use pp_lib::event::Event;
use pp_lib::work::{NewWork, Work};

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;
use crate::waiters::{Awaited, PREFERENCE_APPLIED, applied, wait_until};

/// The header that makes a retried `POST /work` return the first result.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The header a full search page carries: the `after_id` of the next page.
pub const NEXT_AFTER_ID: HeaderName = HeaderName::from_static("x-next-after-id");

/// Creates a work.
///
/// `add_up_to` comes from the optional JSON body, else it is random in 1..100. With an
/// `Idempotency-Key`, a retry with the same body returns the work the first request created.
#[utoipa::path(
    post,
    path = "/work",
    tag = "work",
    request_body(content = Option<CreateWork>, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: the same key with the same add_up_to returns the first result (keys are kept 24 h). 1 to 255 printable ASCII characters, no spaces.", min_length = 1, max_length = 255, pattern = r"^[!-~]{1,255}$"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (RFC 7240): answer as soon as the work is done, or after N seconds (at most PP_WAIT_MAX) with it as it is"),
    ),
    responses(
        (status = 200, description = "The work, as stored (with Prefer: wait, as soon as it is done)", body = Work,
         headers(
            ("Preference-Applied" = String, description = "`wait=N` when the request waited (N as honoured)"),
            ("RateLimit-Policy" = String, description = "When rate limits are on: the client's quota, e.g. `\"pp\";q=100;w=2` (q requests per w seconds)"),
            ("RateLimit" = String, description = "When rate limits are on: what is left, e.g. `\"pp\";r=42;t=1` (r requests now, whole again in t seconds)"),
         )),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 400, description = "Malformed body, add_up_to out of range, or a malformed Idempotency-Key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another add_up_to", body = ErrorBody),
        (status = 503, description = "Database unavailable or too slow, or as many requests wait (Prefer: wait) as PP_WAITERS_MAX allows", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn create_work(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let demand = CreateWork::parse(&body)?;
    let key = idempotency_key(&request)?;
    let wait = state.preferred_wait(&request);
    let Some(key) = key else {
        let add_up_to = demand.unwrap_or_else(WorkDemand::random).add_up_to();
        let work = state
            .work_inserter
            .submit(NewWork::from_api(add_up_to))
            .await?;
        state.works_created();
        return work_answer(&state, work, wait).await;
    };
    // The canonical request: what the body asked, not its bytes.
    let fingerprint = match demand {
        Some(demand) => format!("add_up_to={}", demand.add_up_to()),
        None => "add_up_to=random".to_owned(),
    };
    let add_up_to = demand.unwrap_or_else(WorkDemand::random).add_up_to();
    let ttl = state.idempotency_ttl;
    let creation = state
        .run_db(move |conn| {
            create_work_once(conn, &key, &fingerprint, &NewWork::from_api(add_up_to), ttl)
        })
        .await?;
    match creation {
        IdempotentCreation::Created(work) => {
            state.works_created();
            work_answer(&state, work, wait).await
        }
        IdempotentCreation::Replayed(work) => work_answer(&state, work, wait).await,
        IdempotentCreation::Conflict { first_request } => Err(ApiError::Unprocessable(format!(
            "Idempotency-Key was first used for a different request ({first_request}); use a new key"
        ))),
    }
}

fn idempotency_key(request: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(&IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters without spaces"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// Gets a work by id.
#[utoipa::path(
    get,
    path = "/work/{id}",
    tag = "work",
    params(
        ("id" = i64, Path, description = "The work's id (ids start at 1; 0 and below are no work's)"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (RFC 7240): answer as soon as the work is done, or after N seconds (at most PP_WAIT_MAX) with it as it is"),
    ),
    responses(
        (status = 200, description = "The work", body = Work,
         headers(
            ("Preference-Applied" = String, description = "`wait=N` when the request waited (N as honoured)"),
         )),
        (status = 400, description = "The id is not a whole number", body = ErrorBody),
        (status = 404, description = "No work has this id", body = ErrorBody),
        (status = 503, description = "Database unavailable or too slow, or as many requests wait (Prefer: wait) as PP_WAITERS_MAX allows", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn get_work(
    request: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_work_id(&path)?;
    if let Some(wait) = state.preferred_wait(&request) {
        return wait_for_work(&state, id, wait).await;
    }
    match state.work_json(id).await? {
        Some(json) => Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(web::Bytes::from_owner(JsonText(json)))),
        None => Err(work_not_found(id).into()),
    }
}

/// `work` as it is, or, with a `wait`, as soon as it is done or once the wait is over, with
/// `Preference-Applied` saying the wait was honoured.
async fn work_answer(
    state: &AppState,
    work: Work,
    wait: Option<Duration>,
) -> Result<HttpResponse, ApiError> {
    match wait {
        Some(wait) => wait_for_work(state, work.id, wait).await,
        None => Ok(HttpResponse::Ok().json(work)),
    }
}

/// The work `id` as soon as it is done, or as it is once `wait` is over.
async fn wait_for_work(
    state: &AppState,
    id: i64,
    wait: Duration,
) -> Result<HttpResponse, ApiError> {
    // Every look, the first too, comes after the request registered as waiting: a work done
    // before it did is seen done, one done after wakes it.
    let work = wait_until(&state.waiters, Awaited::Work(id), wait, || async move {
        let work = state.fresh_work(id).await?;
        let done = work.done;
        Ok((work, done))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header((PREFERENCE_APPLIED, applied(wait.as_secs())))
        .insert_header((header::VARY, "Prefer"))
        .json(work))
}

/// Searches works by code prefix, newest window first in id order.
///
/// Returns the works whose `work_code` starts with `work_code`, created within `since` (default:
/// the last hour), in id order. A full page carries `x-next-after-id`: pass it as `after_id` for
/// the next page.
#[utoipa::path(
    get,
    path = "/work/search",
    tag = "work",
    params(SearchParams),
    responses(
        (status = 200, description = "The matching works, in id order", body = [Work],
         headers(("x-next-after-id" = i64, description = "Present on a full page: the after_id of the next page"))),
        (status = 400, description = "A parameter is missing or malformed", body = ErrorBody),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn search_works(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = web::Query::<SearchParams>::from_query(request.query_string())
        .map_err(|error| ApiError::BadRequest(format!("malformed query: {error}")))?
        .into_inner();
    let search = params.check()?.to_work_search(Utc::now());
    let limit = search.limit;
    let works: Vec<Work> = state.search_works(search).await?;
    let mut response = HttpResponse::Ok();
    if works.len() as i64 == limit
        && let Some(last) = works.last()
    {
        response.insert_header((NEXT_AFTER_ID, HeaderValue::from(last.id)));
    }
    Ok(response.json(works))
}

/// Lists a work's events, oldest first.
#[utoipa::path(
    get,
    path = "/work/{id}/events",
    tag = "work",
    params(("id" = i64, Path, description = "The work's id (ids start at 1; 0 and below are no work's)")),
    responses(
        (status = 200, description = "The events, oldest first (none while the work is pending)", body = [Event]),
        (status = 400, description = "The id is not a whole number", body = ErrorBody),
        (status = 404, description = "No work has this id", body = ErrorBody),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn list_work_events(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_work_id(&path)?;
    if let Some(json) = state.cache.get_events(id).await {
        return Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(json));
    }
    let events: Vec<Event> = state.run_db(move |conn| work_events(conn, id)).await?;
    let json = serde_json::to_string(&events)
        .map_err(|error| ApiError::Internal(anyhow::anyhow!("events to JSON: {error}")))?;
    // Events are written with the work's completion, all at once: a work that has any is done
    // and has all it will ever have.
    if !events.is_empty() {
        state.cache.put_events(id, &json).await;
    }
    Ok(HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(json))
}

/// A cached work's JSON as a response body, shared rather than copied.
struct JsonText(pp_lib::cache::WorkJson);

impl AsRef<[u8]> for JsonText {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}
