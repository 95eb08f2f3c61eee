//! A work: one request to add up `1..=add_up_to`, as stored in `works` and sent over HTTP.
//!
//! It serialises exactly like the original project's work, timestamps in epoch seconds:
//! `{"id":21,"work_code":"api-bjq8euwsEA","add_up_to":4,"done":false,"created_on":1634115736,
//! "updated_on":1634115736}`, followed by the fields the original lacked (`result`, `demand_id`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::schema::works;

/// Length of the random part of a work code.
pub const WORK_CODE_RANDOM_LEN: usize = 10;

/// Longest work code the table accepts.
pub const WORK_CODE_MAX_LEN: usize = 50;

/// A stored work. Field order is the wire order.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Queryable,
    QueryableByName,
    Selectable,
    Identifiable,
)]
#[diesel(table_name = works, check_for_backend(diesel::pg::Pg))]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Work {
    #[cfg_attr(feature = "openapi", schema(example = 21))]
    pub id: i64,
    #[cfg_attr(feature = "openapi", schema(example = "api-bjq8euwsEA"))]
    pub work_code: String,
    #[cfg_attr(feature = "openapi", schema(example = 4, minimum = 0))]
    pub add_up_to: i32,
    pub done: bool,
    /// Creation time, in seconds since the Unix epoch.
    #[serde(with = "chrono::serde::ts_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = i64, example = 1634115736))]
    pub created_on: DateTime<Utc>,
    /// Last change, in seconds since the Unix epoch.
    #[serde(with = "chrono::serde::ts_seconds")]
    #[cfg_attr(feature = "openapi", schema(value_type = i64, example = 1634115736))]
    pub updated_on: DateTime<Utc>,
    /// `1 + … + add_up_to` once done, null before.
    pub result: Option<i64>,
    /// The AMQP message id of the demand this work came from; null for work created over HTTP.
    pub demand_id: Option<Uuid>,
}

/// A work to insert; the database fills in the id, `done`, `result` and the timestamps.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = works, check_for_backend(diesel::pg::Pg))]
pub struct NewWork {
    pub work_code: String,
    pub add_up_to: i32,
    pub demand_id: Option<Uuid>,
}

impl NewWork {
    /// A work created over HTTP: `api-` code, no demand.
    pub fn from_api(add_up_to: i32) -> Self {
        NewWork {
            work_code: WorkOrigin::Api.random_code(),
            add_up_to,
            demand_id: None,
        }
    }

    /// A work created by the consumer for the demand with message id `demand_id`.
    pub fn from_demand(demand_id: Uuid, add_up_to: i32) -> Self {
        NewWork {
            work_code: WorkOrigin::Consumer.random_code(),
            add_up_to,
            demand_id: Some(demand_id),
        }
    }
}

/// Where a work came from; it names the prefix of its code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkOrigin {
    /// Created by `POST /work`.
    Api,
    /// Created by the consumer from a queued demand.
    Consumer,
}

impl WorkOrigin {
    pub fn code_prefix(self) -> &'static str {
        match self {
            WorkOrigin::Api => "api-",
            WorkOrigin::Consumer => "consumer-",
        }
    }

    /// A fresh code: the prefix and ten random ASCII letters and digits.
    pub fn random_code(self) -> String {
        let mut code = String::with_capacity(self.code_prefix().len() + WORK_CODE_RANDOM_LEN);
        code.push_str(self.code_prefix());
        code.extend(
            rand::rng()
                .sample_iter(Alphanumeric)
                .take(WORK_CODE_RANDOM_LEN)
                .map(char::from),
        );
        code
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn work_serialises_like_the_original() {
        let at = Utc
            .timestamp_opt(1_634_115_736, 0)
            .single()
            .expect("a valid instant");
        let work = Work {
            id: 21,
            work_code: "api-bjq8euwsEA".to_owned(),
            add_up_to: 4,
            done: false,
            created_on: at,
            updated_on: at,
            result: None,
            demand_id: None,
        };
        let json = serde_json::to_string(&work).expect("a work serialises");
        assert_eq!(
            json,
            r#"{"id":21,"work_code":"api-bjq8euwsEA","add_up_to":4,"done":false,"created_on":1634115736,"updated_on":1634115736,"result":null,"demand_id":null}"#
        );
        let back: Work = serde_json::from_str(&json).expect("and deserialises");
        assert_eq!(back, work);
    }

    #[test]
    fn codes_have_the_origin_prefix_and_ten_alphanumerics() {
        for origin in [WorkOrigin::Api, WorkOrigin::Consumer] {
            let code = origin.random_code();
            let random = code
                .strip_prefix(origin.code_prefix())
                .expect("the code starts with its prefix");
            assert_eq!(random.len(), WORK_CODE_RANDOM_LEN, "{code}");
            assert!(random.chars().all(|c| c.is_ascii_alphanumeric()), "{code}");
            assert!(code.len() <= WORK_CODE_MAX_LEN, "{code}");
        }
    }

    #[test]
    fn codes_do_not_repeat() {
        let codes: std::collections::HashSet<String> =
            (0..10_000).map(|_| WorkOrigin::Api.random_code()).collect();
        assert_eq!(codes.len(), 10_000);
    }
}
