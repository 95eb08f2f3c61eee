//! The HTTP API's wire contract, kept once: what `pp_backend_api` answers, what `cli_01` expects
//! over HTTP and reproduces straight from the database, and what the tests check.
//!
//! - [`ErrorBody`]: every error answer, `{"http_code": 404, "message": "no work with id 7"}`.
//! - [`CreateWork`]: the optional body of `POST /work` and `POST /work/demand`, and how it is read.
//! - [`DemandAccepted`]: the `202` answer to an accepted demand; [`accept_demand`] gives it.
//! - [`follow_demand`]: what became of a demand, by its message id: its work once recorded
//!   ([`DemandProgress::Recorded`]), else where it is ([`DemandStatus`]), else not found.
//! - [`search`]: `GET /work/search`'s parameters, checked, and the window they stand for.
//! - The not-found rule: a work id no work has is [`Error::NotFound`] (`no work with id 7`, a 404
//!   over HTTP), and so is a message id no demand has; [`parse_work_id`] and [`parse_message_id`]
//!   read the ids of paths, [`get_work`] and [`list_work_events`] answer as the routes do.
//!
//! Both ways of asking (the API, and cli_01's `--via db`) call these, so they answer alike by
//! construction, not by keeping copies in step.

pub mod search;

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::events::list_events;
use crate::db::outbox::{find_demand, insert_demand};
use crate::db::works::{find_work, find_work_by_demand};
use crate::demand::WorkDemand;
use crate::error::{Error, InputError};
use crate::event::Event;
use crate::work::Work;

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The HTTP status, repeated.
    #[cfg_attr(feature = "openapi", schema(example = 404))]
    pub http_code: u16,
    /// What went wrong, for a person.
    #[cfg_attr(feature = "openapi", schema(example = "no work with id 7"))]
    pub message: String,
}

/// Body of `POST /work` and `POST /work/demand`; optional, like each field. Fields the API does
/// not know are ignored (here and everywhere), so they never change what a request means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateWork {
    /// Add up 1..=add_up_to; random in 1..100 when absent or null. A whole number (`4`, or
    /// `4.0`).
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 0, maximum = 2147483647, example = 4)
    )]
    pub add_up_to: Option<i32>,
}

impl CreateWork {
    /// The body a client sends for `add_up_to`: none at all for a random one.
    pub fn body(add_up_to: Option<i32>) -> Option<CreateWork> {
        add_up_to.map(|add_up_to| CreateWork {
            add_up_to: Some(add_up_to),
        })
    }

    /// Reads a body as the API does: `None` when the body (or the field) is absent, so the
    /// caller draws a random demand.
    pub fn parse(body: &[u8]) -> Result<Option<WorkDemand>, InputError> {
        // No body at all means no body; a body is JSON, and whitespace alone is no JSON document.
        if body.is_empty() || body.trim_ascii() == b"null" {
            return Ok(None);
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|error| {
                InputError::Request(format!(
                    "the body must be a JSON object like {{\"add_up_to\": 4}}: {error}"
                ))
            })?;
        Self::add_up_to_in(&object)
    }

    /// The `add_up_to` of a body already read as a JSON object (which may hold other fields):
    /// `None` when it is absent or null.
    pub fn add_up_to_in(
        object: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Option<WorkDemand>, InputError> {
        match object.get("add_up_to") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Number(number)) => Ok(Some(WorkDemand::from_number(number)?)),
            Some(other) => Err(InputError::Request(format!(
                "add_up_to must be a whole number from 0 to {}, got {other}",
                i32::MAX
            ))),
        }
    }
}

/// The demand a request stands for: `add_up_to` checked, or drawn at random as the API draws it
/// for a request without one.
pub fn demand_for(add_up_to: Option<i32>) -> Result<WorkDemand, InputError> {
    match add_up_to {
        Some(add_up_to) => WorkDemand::new(add_up_to),
        None => Ok(WorkDemand::random()),
    }
}

/// The answer to an accepted demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DemandAccepted {
    /// The AMQP message id the demand will be published with; the consumer's work for it will
    /// carry it as `demand_id`.
    pub message_id: Uuid,
    /// What the demand asks.
    #[cfg_attr(feature = "openapi", schema(example = 4))]
    pub add_up_to: i32,
    /// Always false: the demand waits for the consumer.
    pub done: bool,
}

impl DemandAccepted {
    /// The answer for `demand`, accepted under `message_id`.
    pub fn new(message_id: Uuid, demand: &WorkDemand) -> Self {
        DemandAccepted {
            message_id,
            add_up_to: demand.add_up_to(),
            done: false,
        }
    }
}

/// Accepts a demand: commits it to the demand outbox under a fresh message id, for the relay to
/// publish, and gives the answer.
pub fn accept_demand(
    conn: &mut PgConnection,
    demand: &WorkDemand,
) -> Result<DemandAccepted, Error> {
    let message_id = Uuid::new_v4();
    insert_demand(conn, message_id, demand)?;
    Ok(DemandAccepted::new(message_id, demand))
}

/// Where a demand accepted over HTTP is before its work is recorded: the `202` answer of
/// `GET /work/demand/{message_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DemandStatus {
    /// The demand's AMQP message id; its work will carry it as `demand_id`.
    pub message_id: Uuid,
    /// What the demand asks.
    #[cfg_attr(feature = "openapi", schema(example = 4))]
    pub add_up_to: i32,
    /// Always false: the work is not recorded yet.
    pub done: bool,
    /// `outbox` while it waits for the relay; `published` once the broker has confirmed it,
    /// until a consumer records its work.
    pub state: DemandState,
    /// When the API accepted it, in seconds since the epoch (as a work's times are).
    #[serde(with = "chrono::serde::ts_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = i64, example = 1634115736))]
    pub accepted_on: DateTime<Utc>,
    /// When the broker confirmed it, in seconds since the epoch; absent while it is in the
    /// outbox.
    #[serde(
        default,
        with = "chrono::serde::ts_seconds_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>, example = 1634115737))]
    pub published_on: Option<DateTime<Utc>>,
}

/// Where a demand is before its work is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DemandState {
    /// Committed to the outbox, waiting for the relay to publish it.
    Outbox,
    /// Published (the broker confirmed it), waiting for a consumer.
    Published,
}

impl DemandState {
    /// The state as the JSON spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DemandState::Outbox => "outbox",
            DemandState::Published => "published",
        }
    }
}

/// What became of a demand.
#[derive(Debug, Clone, PartialEq)]
pub enum DemandProgress {
    /// Its work is recorded (done: the consumer records a work computed).
    Recorded(Work),
    /// Not yet: where it is.
    Waiting(DemandStatus),
}

/// What became of the demand with this message id: its work once a consumer has recorded it,
/// else its place in the outbox, else [`Error::NotFound`]. A demand is known by its outbox row
/// until the row's retention ends (`PP_OUTBOX_RETENTION` after it was published) and by its
/// work from then on: one the consumer dead-lettered reads `published` until then, and is
/// unknown after. A demand another producer published straight to the queue is known once its
/// work is.
pub fn follow_demand(conn: &mut PgConnection, message_id: Uuid) -> Result<DemandProgress, Error> {
    if let Some(work) = find_work_by_demand(conn, message_id)? {
        return Ok(DemandProgress::Recorded(work));
    }
    let Some(demand) = find_demand(conn, message_id)? else {
        return Err(demand_not_found(message_id));
    };
    let add_up_to = demand
        .body
        .get("add_up_to")
        .and_then(serde_json::Value::as_i64)
        .and_then(|add_up_to| i32::try_from(add_up_to).ok())
        .ok_or_else(|| {
            Error::Bug(format!(
                "the outbox holds demand {message_id} without a valid add_up_to"
            ))
        })?;
    Ok(DemandProgress::Waiting(DemandStatus {
        message_id,
        add_up_to,
        done: false,
        state: match demand.published_on {
            Some(_) => DemandState::Published,
            None => DemandState::Outbox,
        },
        accepted_on: demand.created_on,
        published_on: demand.published_on,
    }))
}

/// The error for a message id no demand has: `no demand with id 5f0c…`.
pub fn demand_not_found(message_id: Uuid) -> Error {
    Error::NotFound {
        what: "demand",
        id: message_id.to_string(),
    }
}

/// Reads a demand's message id from a path: a UUID (any of the spellings the `uuid` crate
/// reads: hyphenated, simple, braced, URN).
pub fn parse_message_id(text: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(text).map_err(|_| {
        InputError::Request(format!(
            "a demand's message id is a UUID like 67e55044-10b1-426f-9247-bb680e5fe0c8, got {text:?}"
        ))
        .into()
    })
}

/// The error for a work id no work has: `no work with id 7`.
pub fn work_not_found(id: i64) -> Error {
    Error::NotFound {
        what: "work",
        id: id.to_string(),
    }
}

/// Reads a work id from a path: a whole number. Ids start at 1, so 0 and below are simply
/// unknown (not found, like any id no work has).
pub fn parse_work_id(text: &str) -> Result<i64, Error> {
    match text.parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        Ok(id) => Err(work_not_found(id)),
        Err(_) => Err(InputError::Request(format!(
            "work id must be a whole number from 1 to {}, got {text:?}",
            i64::MAX
        ))
        .into()),
    }
}

/// The work with this id, or [`Error::NotFound`].
pub fn get_work(conn: &mut PgConnection, id: i64) -> Result<Work, Error> {
    find_work(conn, id)?.ok_or_else(|| work_not_found(id))
}

/// The events of the work with this id, oldest first (none while it is pending), or
/// [`Error::NotFound`] when no work has this id.
pub fn list_work_events(conn: &mut PgConnection, id: i64) -> Result<Vec<Event>, Error> {
    let events = list_events(conn, id)?;
    // No events: a pending work, or no work at all; only then is a second look needed.
    if events.is_empty() && find_work(conn, id)?.is_none() {
        return Err(work_not_found(id));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_demand_state_is_spelled_as_its_json() {
        for state in [DemandState::Outbox, DemandState::Published] {
            assert_eq!(
                serde_json::to_value(state).expect("a state serialises"),
                serde_json::json!(state.as_str())
            );
        }
    }

    #[test]
    fn message_ids_are_uuids() {
        let id = Uuid::new_v4();
        assert_eq!(parse_message_id(&id.to_string()).expect("a UUID"), id);
        for text in ["", "7", "not-a-uuid", "67e55044-10b1-426f-9247"] {
            let error = parse_message_id(text).expect_err(text);
            assert!(matches!(error, Error::Input(_)), "{text}: {error:?}");
        }
    }

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
            let parsed = CreateWork::parse(body.as_bytes())
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
            let error = CreateWork::parse(body.as_bytes()).expect_err(body);
            assert!(error.to_string().contains(reason), "{body:?}: {error}");
        }
    }

    #[test]
    fn a_client_sends_what_the_api_reads() {
        let body = CreateWork::body(Some(4)).map(|body| serde_json::to_vec(&body).ok());
        assert_eq!(body, Some(Some(br#"{"add_up_to":4}"#.to_vec())));
        assert_eq!(
            CreateWork::body(None),
            None,
            "a random one is asked with no body"
        );
        let read = CreateWork::parse(br#"{"add_up_to":4}"#).map(|d| d.map(|d| d.add_up_to()));
        assert_eq!(read, Ok(Some(4)));
    }

    #[test]
    fn demands_are_checked_or_random() {
        assert_eq!(demand_for(Some(4)).map(|d| d.add_up_to()), Ok(4));
        let error = demand_for(Some(-1)).err().map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some("add_up_to must be zero or more, got -1")
        );
        let random = demand_for(None).map(|d| d.add_up_to()).ok();
        assert!(random.is_some_and(|n| crate::demand::RANDOM_ADD_UP_TO.contains(&n)));
    }

    #[test]
    fn an_accepted_demand_is_the_originals_shape_with_its_message_id() {
        let demand = WorkDemand::new(2).expect("2 is valid");
        let accepted = DemandAccepted::new(Uuid::nil(), &demand);
        assert_eq!(
            serde_json::to_string(&accepted).ok().as_deref(),
            Some(
                r#"{"message_id":"00000000-0000-0000-0000-000000000000","add_up_to":2,"done":false}"#
            )
        );
    }

    #[test]
    fn error_bodies_are_the_originals() {
        let body = ErrorBody {
            http_code: 404,
            message: work_not_found(7).to_string(),
        };
        assert_eq!(
            serde_json::to_string(&body).ok().as_deref(),
            Some(r#"{"http_code":404,"message":"no work with id 7"}"#)
        );
    }

    #[test]
    fn work_ids_are_positive_whole_numbers() {
        assert_eq!(parse_work_id("7").ok(), Some(7));
        for bad in ["abc", "1.5", "99999999999999999999", ""] {
            assert!(
                matches!(parse_work_id(bad), Err(Error::Input(_))),
                "{bad:?}"
            );
        }
        for unknown in ["0", "-1"] {
            let error = parse_work_id(unknown).expect_err(unknown);
            assert!(matches!(error, Error::NotFound { .. }), "{unknown:?}");
            assert_eq!(error.to_string(), format!("no work with id {unknown}"));
        }
    }
}
