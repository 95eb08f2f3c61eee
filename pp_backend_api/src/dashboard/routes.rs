//! The dashboard's routes: the page (`/` and its two assets), its login, and the JSON endpoints
//! behind it, under `/dashboard/api/`. The guard asks each for what `PP_AUTH` says (see
//! [`crate::auth`]); the actions and the audit trail then ask [`Auth::may_act`] (the `operate`
//! scope, or with `off` the admin token or this machine). Each endpoint's every answer is in the
//! OpenAPI document ([`DashboardDoc`]), which `make contract` checks.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError, web};
use diesel::Connection;
use pp_lib::amqp::dead_letter_queue::{DeadLetterAction, DeadLetterPage, Settled};
use pp_lib::contract::CreateWork;
use pp_lib::db::audit_trail::{self, AuditEvent, Outcome};
use pp_lib::db::outbox::insert_demands;
use pp_lib::demand::WorkDemand;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::admin::{Refusal, seconds_up};
use crate::auth::guard::{Auth, identity_of};
use crate::auth::{Access, AuditLine, Identity, audit};
use crate::dashboard::Dashboard;
use crate::dashboard::assets;
use crate::dashboard::login;
use crate::dashboard::overview::Overview;
use crate::error::{ApiError, ErrorBody, ErrorResponse, RETRY_AFTER_SECONDS};
use crate::resource::{Served, served};
use crate::state::AppState;

/// Most demands one request may enqueue.
pub const MAX_DEMANDS: u32 = 1_000;
/// Dead letters a page shows by default, and at most.
pub const DEFAULT_DEAD_LETTERS: usize = 100;
pub const MAX_DEAD_LETTERS: usize = 500;
/// Most dead letters one "retry all" sends back (press it again for more).
pub const RETRY_ALL_LIMIT: usize = 10_000;

/// The page, the login, and the endpoints behind them.
pub fn routes() -> Vec<Served> {
    use Access::{Open, Operate, Read};
    use Method as M;
    vec![
        served("/", M::GET, Open, web::to(assets::index)),
        served(assets::SCRIPT_PATH, M::GET, Open, web::to(assets::script)),
        served(assets::STYLE_PATH, M::GET, Open, web::to(assets::style)),
        served(login::LOGIN_PAGE, M::GET, Open, web::to(login::login_page)),
        served(login::LOGIN_PATH, M::POST, Open, web::to(login::log_in)),
        served(login::LOGOUT_PATH, M::POST, Open, web::to(login::log_out)),
        served(
            login::SESSION_PATH,
            M::GET,
            Read,
            web::to(login::read_session),
        ),
        served(
            "/dashboard/api/overview",
            M::GET,
            Read,
            web::to(read_overview),
        ),
        served(
            "/dashboard/api/dead-letters",
            M::GET,
            Read,
            web::to(list_dead_letters),
        ),
        served(
            "/dashboard/api/audit",
            M::GET,
            Operate,
            web::to(read_audit_trail),
        ),
        served(
            "/dashboard/api/dead-letters/retry-all",
            M::POST,
            Operate,
            web::to(retry_all_dead_letters),
        ),
        served(
            "/dashboard/api/dead-letters/{key}/retry",
            M::POST,
            Operate,
            web::to(retry_dead_letter),
        ),
        served(
            "/dashboard/api/dead-letters/{key}/discard",
            M::POST,
            Operate,
            web::to(discard_dead_letter),
        ),
        served(
            "/dashboard/api/demands",
            M::POST,
            Operate,
            web::to(enqueue_demands),
        ),
    ]
}

/// What an action needs: the API's state, who may act, and the dashboard.
pub struct Services {
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    dashboard: web::Data<Dashboard>,
}

impl FromRequest for Services {
    type Error = actix_web::Error;
    type Future = std::future::Ready<Result<Self, Self::Error>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        fn data<T: 'static>(request: &HttpRequest) -> Result<web::Data<T>, actix_web::Error> {
            request.app_data::<web::Data<T>>().cloned().ok_or_else(|| {
                actix_web::error::ErrorInternalServerError("the app is built without its state")
            })
        }
        std::future::ready((|| {
            Ok(Services {
                state: data(request)?,
                auth: data(request)?,
                dashboard: data(request)?,
            })
        })())
    }
}

/// Who acts, when they may ([`Auth::may_act`]: the guard has already let only an identity with
/// the `operate` scope through where the request is held to `writes` or `all`).
fn acting(
    request: &HttpRequest,
    auth: &Auth,
    dashboard: &Dashboard,
) -> Result<Identity, DashboardError> {
    let identity = identity_of(request);
    auth.may_act(&dashboard.policy, request, &identity)
        .map_err(DashboardError::Refused)?;
    Ok(identity)
}

/// The audit line of `identity`'s `action` on `object`, ended `outcome`.
fn audit_line(
    request: &HttpRequest,
    auth: &Auth,
    identity: &Identity,
    action: &'static str,
    object: String,
    outcome: Outcome,
) -> AuditLine {
    AuditLine {
        actor: identity.actor(),
        action,
        object,
        source: auth.client(request),
        outcome,
    }
}

/// How the dashboard's endpoints fail, beside the API's own errors.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The action is refused (401 or 403).
    #[error("{}", .0.message())]
    Refused(Refusal),
    /// RabbitMQ cannot be reached (503).
    #[error("RabbitMQ is unavailable: {0}")]
    BrokerUnavailable(String),
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for DashboardError {
    fn status_code(&self) -> StatusCode {
        match self {
            DashboardError::Refused(Refusal::Unauthorized(_)) => StatusCode::UNAUTHORIZED,
            DashboardError::Refused(Refusal::Forbidden(_)) => StatusCode::FORBIDDEN,
            DashboardError::Refused(Refusal::Throttled(_)) => StatusCode::TOO_MANY_REQUESTS,
            DashboardError::BrokerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DashboardError::Api(error) => error.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let DashboardError::Api(error) = self {
            return error.error_response();
        }
        let mut response = ErrorBody::response(self.status_code(), self.to_string());
        let headers = response.headers_mut();
        match self {
            DashboardError::Refused(Refusal::Unauthorized(_)) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"AdminToken realm="pp dashboard""#),
                );
            }
            DashboardError::BrokerUnavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECONDS),
                );
            }
            DashboardError::Refused(Refusal::Throttled(wait)) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds_up(*wait)));
            }
            _ => {}
        }
        response
    }
}

/// Every figure of the overview page.
///
/// Computed at most once a second per API process and shared by every request in that second.
/// Counts are exact while their tables are small and PostgreSQL's estimates beyond (each figure
/// says which); RabbitMQ being down is part of the answer, not an error.
#[utoipa::path(
    get,
    path = "/dashboard/api/overview",
    tag = "dashboard",
    responses(
        (status = 200, description = "The overview", body = Overview),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn read_overview(
    state: web::Data<AppState>,
    dashboard: web::Data<Dashboard>,
) -> Result<HttpResponse, DashboardError> {
    let overview = dashboard
        .overview
        .get(
            &state,
            &dashboard.broker,
            dashboard.sweep_window,
            dashboard.actions(),
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(&*overview))
}

/// Query of the dead-letter list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Most dead letters shown, from the head of the queue (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
}

/// The dead letters at the head of `<queue>.dlq`, in order.
///
/// Browsing takes each message without acknowledging it and hands it back: nothing is lost or
/// moved. Browses within a second share one look at the queue.
#[utoipa::path(
    get,
    path = "/dashboard/api/dead-letters",
    tag = "dashboard",
    params(DeadLetterQuery),
    responses(
        (status = 200, description = "The dead letters, in the queue's order", body = DeadLetterPage),
        (status = 400, description = "limit is not a whole number from 1 to 500", body = ErrorBody),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "RabbitMQ unavailable", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn list_dead_letters(
    request: HttpRequest,
    dashboard: web::Data<Dashboard>,
) -> Result<HttpResponse, DashboardError> {
    let query = web::Query::<DeadLetterQuery>::from_query(request.query_string())
        .map_err(|error| ApiError::BadRequest(format!("malformed query: {error}")))?
        .into_inner();
    let limit = match query.limit.as_deref() {
        None => DEFAULT_DEAD_LETTERS,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_DEAD_LETTERS).contains(limit))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_DEAD_LETTERS}, got {text:?}"
                ))
            })?,
    };
    let page = dashboard
        .dead_letters(limit)
        .await
        .map_err(DashboardError::BrokerUnavailable)?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(page))
}

/// Most audit events one page shows, and by default.
pub const MAX_AUDIT_EVENTS: i64 = 500;
pub const DEFAULT_AUDIT_EVENTS: i64 = 100;

/// Query of the audit trail.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Most events shown, newest first (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500)]
    limit: Option<String>,
    /// Only events older than this one (its id): the next page.
    #[param(value_type = Option<i64>, minimum = 1)]
    before: Option<String>,
}

/// A page of the audit trail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEvent>,
}

/// The audit trail, newest first: who did what, on which object, from where, when, and how it
/// ended — every dashboard action, key and account change, login, logout and failed login.
#[utoipa::path(
    get,
    path = "/dashboard/api/audit",
    tag = "dashboard",
    params(AuditQuery),
    responses(
        (status = 200, description = "The latest events", body = AuditPage),
        (status = 400, description = "limit or before out of range", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn read_audit_trail(
    request: HttpRequest,
    services: Services,
) -> Result<HttpResponse, DashboardError> {
    let Services {
        state,
        auth,
        dashboard,
    } = services;
    acting(&request, &auth, &dashboard)?;
    let query = web::Query::<AuditQuery>::from_query(request.query_string())
        .map_err(|error| ApiError::BadRequest(format!("malformed query: {error}")))?
        .into_inner();
    let limit = whole_in(query.limit.as_deref(), "limit", 1..=MAX_AUDIT_EVENTS)?
        .unwrap_or(DEFAULT_AUDIT_EVENTS);
    let before = whole_in(query.before.as_deref(), "before", 1..=i64::MAX)?;
    let events = state
        .run_db(move |conn| Ok(audit_trail::latest(conn, None, limit, before)?))
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AuditPage { events }))
}

/// The whole number `text` is, when given, if `range` holds it.
fn whole_in(
    text: Option<&str>,
    name: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else {
        return Ok(None);
    };
    text.parse::<i64>()
        .ok()
        .filter(|value| range.contains(value))
        .map(Some)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "{name} must be a whole number from {} to {}, got {text:?}",
                range.start(),
                range.end()
            ))
        })
}

/// What an action on one dead letter did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLetterSettled {
    /// The dead letter's key (its message_id).
    pub key: String,
    /// `retried` (published again to the work queue, confirmed, then removed) or `discarded`.
    #[schema(example = "retried")]
    pub outcome: String,
}

/// Sends one dead letter back to the work queue.
///
/// Publishes its body with the same properties (the same message_id, so the consumer records it
/// once) to the work queue, waits for the broker's confirm, then removes it from the dead-letter
/// queue. Every other dead letter stays where it was.
#[utoipa::path(
    post,
    path = "/dashboard/api/dead-letters/{key}/retry",
    tag = "dashboard",
    params(
        ("key" = String, Path, description = "The dead letter's key: its message_id (or `~` and a hash, for a message without one)"),
        ("X-PP-Admin-Token" = Option<String>, Header, description = "The admin token, when PP_ADMIN_TOKEN is set"),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Sent back to the work queue", body = DeadLetterSettled),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No dead letter has this key (now)", body = ErrorBody),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "RabbitMQ unavailable", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn retry_dead_letter(
    request: HttpRequest,
    path: web::Path<String>,
    services: Services,
) -> Result<HttpResponse, DashboardError> {
    settle(
        request,
        path.into_inner(),
        services,
        DeadLetterAction::Retry,
    )
    .await
}

/// Discards one dead letter.
#[utoipa::path(
    post,
    path = "/dashboard/api/dead-letters/{key}/discard",
    tag = "dashboard",
    params(
        ("key" = String, Path, description = "The dead letter's key: its message_id (or `~` and a hash, for a message without one)"),
        ("X-PP-Admin-Token" = Option<String>, Header, description = "The admin token, when PP_ADMIN_TOKEN is set"),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Removed from the dead-letter queue", body = DeadLetterSettled),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, description = "No dead letter has this key (now)", body = ErrorBody),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "RabbitMQ unavailable", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn discard_dead_letter(
    request: HttpRequest,
    path: web::Path<String>,
    services: Services,
) -> Result<HttpResponse, DashboardError> {
    settle(
        request,
        path.into_inner(),
        services,
        DeadLetterAction::Discard,
    )
    .await
}

async fn settle(
    request: HttpRequest,
    key: String,
    services: Services,
    action: DeadLetterAction,
) -> Result<HttpResponse, DashboardError> {
    let Services {
        state,
        auth,
        dashboard,
    } = services;
    let identity = acting(&request, &auth, &dashboard)?;
    let settled = dashboard.broker.settle(&key, action).await;
    dashboard.forget_browse().await;
    let verb = match action {
        DeadLetterAction::Retry => "dead_letter.retry",
        DeadLetterAction::Discard => "dead_letter.discard",
    };
    let ended = match &settled {
        Ok(Settled::Retried | Settled::Discarded) => Outcome::Done,
        Ok(Settled::NotFound) | Err(_) => Outcome::Failed,
    };
    let line = audit_line(&request, &auth, &identity, verb, key.clone(), ended);
    audit(&state, line).await;
    let outcome = match settled.map_err(DashboardError::BrokerUnavailable)? {
        Settled::Retried => "retried",
        Settled::Discarded => "discarded",
        Settled::NotFound => {
            return Err(ApiError::NotFound(format!("no dead letter has the key {key:?}")).into());
        }
    };
    log::info!(
        "dashboard: dead letter {key} {outcome} by {}",
        identity.actor()
    );
    Ok(HttpResponse::Ok().json(DeadLetterSettled {
        key,
        outcome: outcome.to_owned(),
    }))
}

/// What "retry all" did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeadLettersRetried {
    /// Dead letters sent back to the work queue (at most 10,000 per request; no more than the
    /// queue held when it began).
    pub retried: usize,
}

/// Sends every dead letter back to the work queue, in order.
///
/// Each copy is confirmed by the broker before its dead letter is removed.
#[utoipa::path(
    post,
    path = "/dashboard/api/dead-letters/retry-all",
    tag = "dashboard",
    params(
        ("X-PP-Admin-Token" = Option<String>, Header, description = "The admin token, when PP_ADMIN_TOKEN is set"),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 200, description = "Sent back to the work queue", body = DeadLettersRetried),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "RabbitMQ unavailable", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn retry_all_dead_letters(
    request: HttpRequest,
    services: Services,
) -> Result<HttpResponse, DashboardError> {
    let Services {
        state,
        auth,
        dashboard,
    } = services;
    let identity = acting(&request, &auth, &dashboard)?;
    let retried = dashboard.broker.retry_all(RETRY_ALL_LIMIT).await;
    dashboard.forget_browse().await;
    let (object, ended) = match &retried {
        Ok(count) => (format!("{count} dead letters"), Outcome::Done),
        Err(reason) => (reason.clone(), Outcome::Failed),
    };
    let line = audit_line(
        &request,
        &auth,
        &identity,
        "dead_letter.retry_all",
        object,
        ended,
    );
    audit(&state, line).await;
    let retried = retried.map_err(DashboardError::BrokerUnavailable)?;
    log::info!(
        "dashboard: {retried} dead letter(s) sent back to the work queue by {}",
        identity.actor()
    );
    Ok(HttpResponse::Ok().json(DeadLettersRetried { retried }))
}

/// Body of the demand enqueuing action; optional, like each field.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // Read by the document's generator only: the body is parsed by hand.
pub struct EnqueueDemands {
    /// How many demands (default 1).
    #[schema(minimum = 1, maximum = 1000, example = 10)]
    count: Option<u32>,
    /// What each adds up to; random in 1..100 for each when absent or null.
    #[schema(minimum = 0, maximum = 2147483647, example = 4)]
    add_up_to: Option<i32>,
}

/// The demands accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DemandsEnqueued {
    /// How many were committed to the outbox.
    pub accepted: usize,
    /// Their message ids, in order.
    pub message_ids: Vec<Uuid>,
}

/// Enqueues work demands, the way `POST /work/demand` does.
///
/// They are committed to the demand outbox in one transaction (the relay publishes them), so the
/// answer is 202 whether RabbitMQ is up or not.
#[utoipa::path(
    post,
    path = "/dashboard/api/demands",
    tag = "dashboard",
    request_body(content = Option<EnqueueDemands>, content_type = "application/json"),
    params(
        ("X-PP-Admin-Token" = Option<String>, Header, description = "The admin token, when PP_ADMIN_TOKEN is set"),
    ),
    security((), ("admin_token" = [])),
    responses(
        (status = 202, description = "Committed to the outbox", body = DemandsEnqueued),
        (status = 400, description = "Malformed body, count or add_up_to out of range", body = ErrorBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn enqueue_demands(
    request: HttpRequest,
    body: web::Bytes,
    services: Services,
) -> Result<HttpResponse, DashboardError> {
    let Services {
        state,
        auth,
        dashboard,
    } = services;
    let identity = acting(&request, &auth, &dashboard)?;
    let (count, add_up_to) = parse_enqueue(&body)?;
    let demands: Vec<(Uuid, WorkDemand)> = (0..count)
        .map(|_| (Uuid::new_v4(), add_up_to.unwrap_or_else(WorkDemand::random)))
        .collect();
    let message_ids: Vec<Uuid> = demands.iter().map(|(id, _)| *id).collect();
    let object = match add_up_to {
        Some(demand) => format!("{count} adding up to {}", demand.add_up_to()),
        None => format!("{count} adding up to random numbers"),
    };
    let line = audit_line(
        &request,
        &auth,
        &identity,
        "demands.enqueue",
        object,
        Outcome::Done,
    );
    // The demands and the line that says who enqueued them are committed together.
    let accepted = state
        .run_db(move |conn| {
            Ok(conn.transaction(|conn| {
                let accepted = insert_demands(conn, &demands)?;
                line.record(conn)?;
                diesel::QueryResult::Ok(accepted)
            })?)
        })
        .await?;
    state.demands_accepted();
    Ok(HttpResponse::Accepted().json(DemandsEnqueued {
        accepted,
        message_ids,
    }))
}

/// Reads `{"count": n, "add_up_to": m}`, each optional.
fn parse_enqueue(body: &[u8]) -> Result<(u32, Option<WorkDemand>), ApiError> {
    if body.is_empty() || body.trim_ascii() == b"null" {
        return Ok((1, None));
    }
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|error| {
            ApiError::BadRequest(format!(
                "the body must be a JSON object like {{\"count\": 10, \"add_up_to\": 4}}: {error}"
            ))
        })?;
    let count = match object.get("count") {
        None | Some(serde_json::Value::Null) => 1,
        Some(serde_json::Value::Number(number)) => number
            .as_f64()
            .filter(|n| n.fract() == 0.0 && (1.0..=f64::from(MAX_DEMANDS)).contains(n))
            .map(|n| n as u32)
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "count must be a whole number from 1 to {MAX_DEMANDS}, got {number}"
                ))
            })?,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "count must be a whole number from 1 to {MAX_DEMANDS}, got {other}"
            )));
        }
    };
    Ok((count, CreateWork::add_up_to_in(&object)?))
}

/// 401: the admin token is needed, and missing or wrong.
#[derive(utoipa::ToResponse)]
#[response(
    description = "PP_ADMIN_TOKEN is set and the request's X-PP-Admin-Token is missing or wrong",
    headers(("WWW-Authenticate" = String, description = "`AdminToken realm=\"pp dashboard\"`"))
)]
#[allow(dead_code)] // Read by the document's generator only.
pub struct Unauthorized(#[to_schema] ErrorBody);

/// 403: no admin token is configured and the request is not from the API's machine.
#[derive(utoipa::ToResponse)]
#[response(
    description = "No admin token is set and the request does not come from the API's own machine (or comes through a proxy)"
)]
#[allow(dead_code)] // Read by the document's generator only.
pub struct Forbidden(#[to_schema] ErrorBody);

/// The dashboard's part of the OpenAPI document, merged into the API's.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        login::log_in,
        login::log_out,
        login::read_session,
        read_overview,
        list_dead_letters,
        read_audit_trail,
        retry_dead_letter,
        discard_dead_letter,
        retry_all_dead_letters,
        enqueue_demands,
    ),
    components(
        schemas(
            Overview,
            DeadLetterPage,
            DeadLetterSettled,
            DeadLettersRetried,
            EnqueueDemands,
            DemandsEnqueued,
            ErrorBody,
            login::Login,
            login::SessionInfo,
            AuditPage,
            AuditEvent,
        ),
        responses(Unauthorized, Forbidden),
    ),
    tags((name = "dashboard", description = "What the dashboard at / reads, its login, its actions and its audit trail (the operate scope)")),
    modifiers(&AdminTokenScheme)
)]
pub struct DashboardDoc;

/// The admin token as a security scheme: an API key in the `X-PP-Admin-Token` header.
struct AdminTokenScheme;

impl utoipa::Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "admin_token",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "X-PP-Admin-Token",
                    "PP_ADMIN_TOKEN, when the API is started with one",
                ))),
            );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enqueue_bodies_give_a_count_and_maybe_add_up_to() {
        let cases: [(&str, u32, Option<i32>); 6] = [
            ("", 1, None),
            ("null", 1, None),
            ("{}", 1, None),
            (r#"{"count": 10}"#, 10, None),
            (r#"{"count": 2.0, "add_up_to": 4}"#, 2, Some(4)),
            (r#"{"count": null, "add_up_to": null}"#, 1, None),
        ];
        for (body, count, add_up_to) in cases {
            let (parsed_count, parsed) =
                parse_enqueue(body.as_bytes()).unwrap_or_else(|error| panic!("{body:?}: {error}"));
            assert_eq!(parsed_count, count, "{body:?}");
            assert_eq!(
                parsed.map(|demand| demand.add_up_to()),
                add_up_to,
                "{body:?}"
            );
        }
    }

    #[test]
    fn bad_enqueue_bodies_say_what_is_wrong() {
        let cases = [
            ("nope", "JSON object"),
            (r#"{"count": 0}"#, "count must be"),
            (r#"{"count": 1001}"#, "count must be"),
            (r#"{"count": 1.5}"#, "count must be"),
            (r#"{"count": "3"}"#, "count must be"),
            (r#"{"add_up_to": -1}"#, "zero or more"),
        ];
        for (body, reason) in cases {
            let error = parse_enqueue(body.as_bytes()).expect_err(body);
            assert!(error.to_string().contains(reason), "{body:?}: {error}");
        }
    }
}
