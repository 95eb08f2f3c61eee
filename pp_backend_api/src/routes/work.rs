//! `/work`: create a work, get one, search them, list a work's events.

use actix_web::http::header::{ContentType, HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use pp_lib::db::idempotency::{IdempotentCreation, MAX_KEY_LEN, create_work_once};
use pp_lib::db::works::{SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT, WorkSearch, find_work};
use pp_lib::demand::WorkDemand;
use pp_lib::event::Event;
use pp_lib::work::{NewWork, Work};
use serde::Deserialize;

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The header that makes a retried `POST /work` return the first result.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The header a full search page carries: the `after_id` of the next page.
pub const NEXT_AFTER_ID: HeaderName = HeaderName::from_static("x-next-after-id");

/// Default window of a search: works created in the last hour (the original's contract).
pub const DEFAULT_SEARCH_WINDOW: &str = "1h";

/// Body of `POST /work` and `POST /work/demand`; optional, like each field. Fields the API does
/// not know are ignored (here and everywhere), so they never change what a request means.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateWork {
    /// Add up 1..=add_up_to; random in 1..100 when absent or null. A whole number (`4`, or
    /// `4.0`).
    #[schema(minimum = 0, maximum = 2147483647, example = 4)]
    add_up_to: Option<i32>,
}

/// Reads an optional `{"add_up_to": n}` body: `None` when the body (or the field) is absent,
/// so the caller draws a random one.
pub(crate) fn parse_add_up_to(body: &[u8]) -> Result<Option<WorkDemand>, ApiError> {
    // No body at all means no body; a body is JSON, and whitespace alone is no JSON document.
    if body.is_empty() || body.trim_ascii() == b"null" {
        return Ok(None);
    }
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|error| {
            ApiError::BadRequest(format!(
                "the body must be a JSON object like {{\"add_up_to\": 4}}: {error}"
            ))
        })?;
    match object.get("add_up_to") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(number)) => Ok(Some(WorkDemand::from_number(number)?)),
        Some(other) => Err(ApiError::BadRequest(format!(
            "add_up_to must be a whole number from 0 to {}, got {other}",
            i32::MAX
        ))),
    }
}

/// Reads a work id from the path: a whole number. Ids start at 1, so 0 and below are simply
/// unknown (404, like any id no work has).
fn parse_work_id(text: &str) -> Result<i64, ApiError> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        Ok(id) => Err(ApiError::NotFound(format!("no work with id {id}"))),
        Err(_) => Err(ApiError::BadRequest(format!(
            "work id must be a whole number from 1 to {}, got {text:?}",
            i64::MAX
        ))),
    }
}

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
        ("X-Api-Key" = Option<String>, Header, description = "Names the client for rate limiting (else its address counts). Not checked: it is no credential."),
    ),
    responses(
        (status = 200, description = "The work, as stored", body = Work,
         headers(
            ("RateLimit-Policy" = String, description = "When rate limits are on: the client's quota, e.g. `\"pp\";q=100;w=2` (q requests per w seconds)"),
            ("RateLimit" = String, description = "When rate limits are on: what is left, e.g. `\"pp\";r=42;t=1` (r requests now, whole again in t seconds)"),
         )),
        (status = 429, response = crate::routes::TooManyRequests),
        (status = 400, description = "Malformed body, add_up_to out of range, or a malformed Idempotency-Key", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 422, description = "Idempotency-Key reused with another add_up_to", body = ErrorBody),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn create_work(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let demand = parse_add_up_to(&body)?;
    let key = idempotency_key(&request)?;
    let Some(key) = key else {
        let add_up_to = demand.unwrap_or_else(WorkDemand::random).add_up_to();
        let work = state
            .work_inserter
            .submit(NewWork::from_api(add_up_to))
            .await?;
        return Ok(HttpResponse::Ok().json(work));
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
        IdempotentCreation::Created(work) | IdempotentCreation::Replayed(work) => {
            Ok(HttpResponse::Ok().json(work))
        }
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
    params(("id" = i64, Path, description = "The work's id (ids start at 1; 0 and below are no work's)")),
    responses(
        (status = 200, description = "The work", body = Work),
        (status = 400, description = "The id is not a whole number", body = ErrorBody),
        (status = 404, description = "No work has this id", body = ErrorBody),
        (status = 503, description = "Database unavailable or too slow", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait before trying again"))),
    )
)]
pub async fn get_work(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_work_id(&path)?;
    match state.work_json(id).await? {
        Some(json) => Ok(HttpResponse::Ok()
            .content_type(ContentType::json())
            .body(json.to_string())),
        None => Err(ApiError::NotFound(format!("no work with id {id}"))),
    }
}

/// Query of `GET /work/search`. Every field is read as text and checked here, so each mistake
/// gets its own message; unknown parameters are ignored.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Works whose code starts with this text (taken literally: `%` and `_` match themselves).
    #[param(required = true, example = "api-", pattern = r"^[^\u0000]*$")]
    work_code: Option<String>,
    /// How far back to look: seconds, or amounts with units `ms`, `s`, `m`, `h`, `d`, such as
    /// `30m`, `6h`, `1d` or `1h30m` (default `1h`). A window reaching before 1970 is all of time.
    #[param(
        example = "1h",
        pattern = r"^([0-9]{1,12}|([0-9]{1,12}(ms|s|m|h|d))+)$"
    )]
    since: Option<String>,
    /// Only done (`true`) or pending (`false`) works.
    #[param(value_type = Option<bool>)]
    done: Option<String>,
    /// Most works returned (default 100).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// Paging: works with a larger id than this (the `x-next-after-id` of the previous page).
    #[param(value_type = Option<i64>, minimum = 0)]
    after_id: Option<String>,
}

/// Longest run of digits in a `since` amount: 10^12 days is already before 1970.
const MAX_WINDOW_DIGITS: usize = 12;

/// True when `text` is a search window as the document describes it: a number of seconds, or
/// amounts with a unit (`ms`, `s`, `m`, `h`, `d`), each of 1 to [`MAX_WINDOW_DIGITS`] digits.
fn is_search_window(text: &str) -> bool {
    let amount = |rest: &str| -> Option<usize> {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        (1..=MAX_WINDOW_DIGITS).contains(&digits).then_some(digits)
    };
    if text.is_empty() || amount(text) == Some(text.len()) {
        return !text.is_empty();
    }
    let mut rest = text;
    while !rest.is_empty() {
        let Some(digits) = amount(rest) else {
            return false;
        };
        rest = &rest[digits..];
        let Some(unit) = ["ms", "s", "m", "h", "d"]
            .into_iter()
            .find(|unit| rest.starts_with(unit))
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

impl SearchQuery {
    fn into_search(self) -> Result<WorkSearch, ApiError> {
        let code_prefix = self.work_code.ok_or_else(|| {
            ApiError::BadRequest(
                "missing query parameter work_code (a prefix such as api-)".to_owned(),
            )
        })?;
        if code_prefix.contains('\0') {
            return Err(ApiError::BadRequest(
                "work_code cannot contain a NUL character".to_owned(),
            ));
        }
        let since = self.since.as_deref().unwrap_or(DEFAULT_SEARCH_WINDOW);
        if !is_search_window(since) {
            return Err(ApiError::BadRequest(format!(
                "since: use seconds or amounts with a unit (ms, s, m, h, d) like 30m, 6h or \
                 1h30m, each of at most {MAX_WINDOW_DIGITS} digits; got {since:?}"
            )));
        }
        let window = pp_lib::config::parse_duration(since)
            .map_err(|error| ApiError::BadRequest(format!("since: {error}")))?;
        // No work predates the epoch: a longer window (even one too long to subtract) is the
        // same search, and stays within what PostgreSQL's timestamps hold.
        let created_since = chrono::Duration::from_std(window)
            .ok()
            .and_then(|window| Utc::now().checked_sub_signed(window))
            .map_or(chrono::DateTime::UNIX_EPOCH, |since| {
                since.max(chrono::DateTime::UNIX_EPOCH)
            });
        let done = match self.done.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "done must be true or false, got {other:?}"
                )));
            }
        };
        let limit = match self.limit.as_deref() {
            None => SEARCH_DEFAULT_LIMIT,
            Some(text) => match text.parse::<i64>() {
                Ok(limit) if (1..=SEARCH_MAX_LIMIT).contains(&limit) => limit,
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {SEARCH_MAX_LIMIT}, got {text:?}"
                    )));
                }
            },
        };
        let after_id = match self.after_id.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(
                || {
                    ApiError::BadRequest(format!(
                        "after_id must be a whole number from 0 to {}, got {text:?}",
                        i64::MAX
                    ))
                },
            )?),
        };
        Ok(WorkSearch {
            code_prefix,
            created_since,
            created_before: None,
            done,
            after_id,
            limit,
        })
    }
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
    params(SearchQuery),
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
    let query = web::Query::<SearchQuery>::from_query(request.query_string())
        .map_err(|error| ApiError::BadRequest(format!("malformed query: {error}")))?
        .into_inner();
    let search = query.into_search()?;
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
    let events = state
        .run_db(move |conn| {
            let events = pp_lib::db::events::list_events(conn, id)?;
            // No events: a pending work, or no work at all; only then is a second look needed.
            if events.is_empty() && find_work(conn, id)?.is_none() {
                return Ok(None);
            }
            Ok(Some(events))
        })
        .await?;
    let Some(events) = events else {
        return Err(ApiError::NotFound(format!("no work with id {id}")));
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_give_add_up_to_or_none() {
        let cases: [(&str, Option<i32>); 7] = [
            ("", None),
            ("null", None),
            (" null\n", None),
            ("{}", None),
            (r#"{"add_up_to": null}"#, None),
            (r#"{"add_up_to": 4}"#, Some(4)),
            (r#"{"add_up_to": 0, "other": 1}"#, Some(0)),
        ];
        for (body, expected) in cases {
            let parsed = parse_add_up_to(body.as_bytes())
                .unwrap_or_else(|error| panic!("{body:?}: {error}"))
                .map(|demand| demand.add_up_to());
            assert_eq!(parsed, expected, "{body:?}");
        }
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let cases = [
            ("  \n", "JSON object"),
            ("nope", "JSON object"),
            ("[4]", "JSON object"),
            (r#"{"add_up_to": "4"}"#, "whole number"),
            (r#"{"add_up_to": -1}"#, "zero or more"),
            (r#"{"add_up_to": 2147483648}"#, "at most"),
            (r#"{"add_up_to": 1.5}"#, "whole number"),
        ];
        for (body, reason) in cases {
            let error = parse_add_up_to(body.as_bytes()).expect_err(body);
            assert!(error.to_string().contains(reason), "{body:?}: {error}");
        }
    }

    #[test]
    fn search_windows_are_seconds_or_amounts_with_units() {
        let good = [
            "1",
            "3600",
            "1h",
            "30m",
            "1h30m",
            "250ms",
            "1d2h3m4s5ms",
            "999999999999d",
        ];
        for window in good {
            assert!(is_search_window(window), "{window:?}");
        }
        let bad = [
            "",
            " 1h",
            "1h ",
            "1h\n",
            "h",
            "1h30",
            "1w",
            "-1h",
            "1.5h",
            "9999999999999",
            "1000000000000d",
        ];
        for window in bad {
            assert!(!is_search_window(window), "{window:?}");
        }
    }

    #[test]
    fn work_ids_are_positive_whole_numbers() {
        assert_eq!(parse_work_id("7").ok(), Some(7));
        for bad in ["abc", "1.5", "99999999999999999999", ""] {
            assert!(
                matches!(parse_work_id(bad), Err(ApiError::BadRequest(_))),
                "{bad:?}"
            );
        }
        for unknown in ["0", "-1"] {
            assert!(
                matches!(parse_work_id(unknown), Err(ApiError::NotFound(_))),
                "{unknown:?}"
            );
        }
    }
}
