//! Events: the log of a work's execution, three rows per done work.
//!
//! `compute/start` and `compute/stop` bracket the computation (their value is empty, as in the
//! original project); `compute/result` carries the sum as text. The table allows each variable at
//! most once per work, so a work can never be logged as processed twice.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::events;
use crate::work::Work;

/// A stored event. Field order is the wire order.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Queryable, Selectable, Identifiable,
)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub id: i64,
    pub work_code: String,
    /// `compute/start`, `compute/stop` or `compute/result`.
    #[cfg_attr(feature = "openapi", schema(example = "compute/result"))]
    pub variable: String,
    /// The sum for `compute/result`; empty for the others.
    #[cfg_attr(feature = "openapi", schema(example = "10"))]
    pub value: String,
    /// When it happened, in seconds since the Unix epoch.
    #[serde(with = "chrono::serde::ts_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = i64, example = 1634115736))]
    pub created_on: DateTime<Utc>,
    pub work_id: i64,
}

/// An event to insert.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = events, check_for_backend(diesel::pg::Pg))]
pub struct NewEvent {
    pub work_id: i64,
    pub work_code: String,
    pub variable: String,
    pub value: String,
    pub created_on: DateTime<Utc>,
}

impl NewEvent {
    pub fn new(work: &Work, variable: EventVariable, value: String, at: DateTime<Utc>) -> Self {
        NewEvent {
            work_id: work.id,
            work_code: work.work_code.clone(),
            variable: variable.as_str().to_owned(),
            value,
            created_on: at,
        }
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventVariable {
    ComputeStart,
    ComputeStop,
    ComputeResult,
}

impl EventVariable {
    pub const ALL: [EventVariable; 3] = [
        EventVariable::ComputeStart,
        EventVariable::ComputeStop,
        EventVariable::ComputeResult,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventVariable::ComputeStart => "compute/start",
            EventVariable::ComputeStop => "compute/stop",
            EventVariable::ComputeResult => "compute/result",
        }
    }
}

impl fmt::Display for EventVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventVariable {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EventVariable::ALL
            .into_iter()
            .find(|variable| variable.as_str() == text)
            .ok_or_else(|| format!("unknown event variable `{text}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_round_trip_through_text() {
        for variable in EventVariable::ALL {
            assert_eq!(variable.as_str().parse(), Ok(variable));
        }
        assert!("compute/other".parse::<EventVariable>().is_err());
    }
}
