//! A work demand: the message that asks for a work, on the queue and in `POST /work/demand`.
//!
//! The body is exactly the original project's, `{"add_up_to": 2, "done": false}`. Parsing checks
//! it once, here, so that the API (a 400) and the consumer (a dead-lettered message) refuse the
//! same inputs for the same reasons.

use rand::Rng;
use serde::Serialize;

use crate::error::InputError;

/// `add_up_to` of a random demand is drawn from this range, as in the original project.
pub const RANDOM_ADD_UP_TO: std::ops::Range<i32> = 1..100;

/// A valid demand: `add_up_to` is in `0..=i32::MAX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WorkDemand {
    add_up_to: i32,
    /// Always false on the wire; kept because the original's clients send and expect it.
    done: bool,
}

impl WorkDemand {
    /// A demand for `1 + … + add_up_to`.
    pub fn new(add_up_to: i32) -> Result<Self, InputError> {
        if add_up_to < 0 {
            return Err(InputError::NegativeAddUpTo(i64::from(add_up_to)));
        }
        Ok(WorkDemand {
            add_up_to,
            done: false,
        })
    }

    /// A demand with a random `add_up_to` from [`RANDOM_ADD_UP_TO`].
    pub fn random() -> Self {
        WorkDemand {
            add_up_to: rand::rng().random_range(RANDOM_ADD_UP_TO),
            done: false,
        }
    }

    pub fn add_up_to(&self) -> i32 {
        self.add_up_to
    }

    /// Parses and checks a JSON body: an object with a whole-number `add_up_to` in
    /// `0..=i32::MAX` and, optionally, a boolean `done` (ignored: a demand is never born done).
    /// Unknown fields are ignored; anything else is refused with the reason.
    pub fn from_json(body: &[u8]) -> Result<Self, InputError> {
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|error| InputError::MalformedDemand(error.to_string()))?;
        match object.get("done") {
            None | Some(serde_json::Value::Bool(_)) => {}
            Some(other) => {
                return Err(InputError::MalformedDemand(format!(
                    "done must be true or false, got {other}"
                )));
            }
        }
        match object.get("add_up_to") {
            Some(serde_json::Value::Number(number)) => Self::from_number(number),
            Some(other) => Err(InputError::MalformedDemand(format!(
                "add_up_to must be a whole number, got {other}"
            ))),
            None => Err(InputError::MalformedDemand(
                "missing field `add_up_to`".to_owned(),
            )),
        }
    }

    /// Checks a JSON number as an `add_up_to`.
    pub fn from_number(number: &serde_json::Number) -> Result<Self, InputError> {
        if let Some(value) = number.as_i64() {
            let add_up_to = i32::try_from(value).map_err(|_| out_of_range(value))?;
            Self::new(add_up_to)
        } else if number.as_u64().is_some() {
            Err(InputError::AddUpToTooLarge(number.to_string()))
        } else if let Some(value) = number.as_f64().filter(|value| value.fract() == 0.0) {
            // JSON has one number type: `4.0` and `4e2` are whole numbers as much as `4` is,
            // and JSON Schema's `integer` accepts them. Every whole f64 in range is exact.
            if value < 0.0 {
                Err(InputError::NegativeAddUpTo(
                    value.max(i64::MIN as f64) as i64
                ))
            } else if value > f64::from(i32::MAX) {
                Err(InputError::AddUpToTooLarge(number.to_string()))
            } else {
                Self::new(value as i32)
            }
        } else {
            Err(InputError::MalformedDemand(format!(
                "add_up_to must be a whole number, got {number}"
            )))
        }
    }

    /// The message body, exactly as the original project sent it.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising two plain fields into memory cannot fail.
        serde_json::to_vec(self).expect("a WorkDemand always serialises")
    }
}

fn out_of_range(value: i64) -> InputError {
    if value < 0 {
        InputError::NegativeAddUpTo(value)
    } else {
        InputError::AddUpToTooLarge(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_originals() {
        let demand = WorkDemand::new(2).expect("2 is valid");
        assert_eq!(demand.to_json(), br#"{"add_up_to":2,"done":false}"#);
        assert_eq!(WorkDemand::from_json(&demand.to_json()), Ok(demand));
    }

    #[test]
    fn valid_bodies_parse() {
        let cases: [(&str, i32); 7] = [
            (r#"{"add_up_to": 2, "done": false}"#, 2),
            (r#"{"add_up_to": 323106.0}"#, 323_106),
            (r#"{"add_up_to": 4e2}"#, 400),
            (r#"{"add_up_to": 0}"#, 0),
            (r#"{"add_up_to": 2147483647, "done": false}"#, i32::MAX),
            (r#"{"add_up_to": 7, "done": false, "extra": [1]}"#, 7),
            (r#"{"add_up_to": 5, "done": true}"#, 5),
        ];
        for (body, expected) in cases {
            let demand = WorkDemand::from_json(body.as_bytes())
                .unwrap_or_else(|error| panic!("{body} should parse: {error}"));
            assert_eq!(demand.add_up_to(), expected, "{body}");
        }
    }

    #[test]
    fn invalid_bodies_are_refused_with_the_reason() {
        let cases = [
            ("not json", "malformed"),
            ("", "malformed"),
            ("{}", "missing field `add_up_to`"),
            (r#"{"add_up_to": "4"}"#, "whole number, got \"4\""),
            (r#"{"add_up_to": null}"#, "whole number, got null"),
            (
                r#"{"add_up_to": 4, "done": "no"}"#,
                "done must be true or false",
            ),
            (r#"{"add_up_to": 1.5}"#, "whole number"),
            (r#"{"add_up_to": -4.0}"#, "zero or more"),
            (r#"{"add_up_to": 3e9}"#, "at most"),
            (r#"{"add_up_to": -1}"#, "zero or more"),
            (r#"{"add_up_to": 2147483648}"#, "at most 2147483647"),
            (
                r#"{"add_up_to": 18446744073709551615}"#,
                "at most 2147483647",
            ),
            (r#"{"add_up_to": -9223372036854775808}"#, "zero or more"),
            (r#"[4]"#, "malformed"),
        ];
        for (body, reason) in cases {
            let error = WorkDemand::from_json(body.as_bytes())
                .expect_err(&format!("{body:?} should be refused"));
            assert!(
                error.to_string().contains(reason),
                "{body:?}: expected {reason:?} in {error:?}"
            );
        }
    }

    #[test]
    fn random_demands_stay_in_range() {
        for _ in 0..1_000 {
            let demand = WorkDemand::random();
            assert!(RANDOM_ADD_UP_TO.contains(&demand.add_up_to()), "{demand:?}");
        }
    }
}
