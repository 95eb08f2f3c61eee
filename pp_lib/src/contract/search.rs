//! `GET /work/search`: its query parameters as they arrive ([`SearchParams`]), checked into a
//! [`SearchQuery`], and the [`WorkSearch`] that query stands for at a given instant.
//!
//! The API reads the parameters; cli_01 builds a [`SearchQuery`] from its command line, sends it
//! with [`SearchQuery::to_params`] over HTTP or runs [`SearchQuery::to_work_search`] on the
//! database; both end in the same window, clamped at the epoch, and the same query.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::config::parse_duration;
use crate::db::works::{SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT, WorkSearch};
use crate::error::InputError;

/// Default window of a search: works created in the last hour (the original's contract).
pub const DEFAULT_SEARCH_WINDOW: &str = "1h";

/// Longest run of digits in a `since` amount: 10^12 days is already before 1970.
const MAX_WINDOW_DIGITS: usize = 12;

/// Query of `GET /work/search`. Every field is read as text and checked by
/// [`SearchParams::check`], so each mistake gets its own message; unknown parameters are ignored.
#[derive(Debug, Default, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct SearchParams {
    /// Works whose code starts with this text (taken literally: `%` and `_` match themselves).
    #[cfg_attr(
        feature = "openapi",
        param(required = true, example = "api-", pattern = r"^[^\u0000]*$")
    )]
    work_code: Option<String>,
    /// How far back to look: seconds, or amounts with units `ms`, `s`, `m`, `h`, `d`, such as
    /// `30m`, `6h`, `1d` or `1h30m` (default `1h`). A window reaching before 1970 is all of time.
    #[cfg_attr(
        feature = "openapi",
        param(
            example = "1h",
            pattern = r"^([0-9]{1,12}|([0-9]{1,12}(ms|s|m|h|d))+)$"
        )
    )]
    since: Option<String>,
    /// Only done (`true`) or pending (`false`) works.
    #[cfg_attr(feature = "openapi", param(value_type = Option<bool>))]
    done: Option<String>,
    /// Most works returned (default 100).
    #[cfg_attr(
        feature = "openapi",
        param(value_type = Option<i64>, minimum = 1, maximum = 1000)
    )]
    limit: Option<String>,
    /// Paging: works with a larger id than this (the `x-next-after-id` of the previous page).
    #[cfg_attr(feature = "openapi", param(value_type = Option<i64>, minimum = 0))]
    after_id: Option<String>,
}

/// A search, checked: what both ways of asking run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Works whose code starts with this text, taken literally.
    pub prefix: String,
    /// Works created at most this long ago.
    pub since: Duration,
    /// Only done (or only pending) works, when set.
    pub done: Option<bool>,
    /// At most this many works, 1 to [`SEARCH_MAX_LIMIT`].
    pub limit: i64,
    /// Works with a larger id than this, when set: the last id of the previous page.
    pub after_id: Option<i64>,
}

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

fn refused(message: String) -> InputError {
    InputError::Request(message)
}

impl SearchParams {
    /// Checks every parameter, in the order the document lists them, and says what is wrong with
    /// the first one that is.
    pub fn check(self) -> Result<SearchQuery, InputError> {
        let prefix = self.work_code.ok_or_else(|| {
            refused("missing query parameter work_code (a prefix such as api-)".to_owned())
        })?;
        if prefix.contains('\0') {
            return Err(refused(
                "work_code cannot contain a NUL character".to_owned(),
            ));
        }
        let since = self.since.as_deref().unwrap_or(DEFAULT_SEARCH_WINDOW);
        if !is_search_window(since) {
            return Err(refused(format!(
                "since: use seconds or amounts with a unit (ms, s, m, h, d) like 30m, 6h or \
                 1h30m, each of at most {MAX_WINDOW_DIGITS} digits; got {since:?}"
            )));
        }
        let since = parse_duration(since).map_err(|error| refused(format!("since: {error}")))?;
        let done = match self.done.as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(refused(format!(
                    "done must be true or false, got {other:?}"
                )));
            }
        };
        let limit = match self.limit.as_deref() {
            None => SEARCH_DEFAULT_LIMIT,
            Some(text) => match text.parse::<i64>() {
                Ok(limit) if (1..=SEARCH_MAX_LIMIT).contains(&limit) => limit,
                _ => {
                    return Err(refused(format!(
                        "limit must be a whole number from 1 to {SEARCH_MAX_LIMIT}, got {text:?}"
                    )));
                }
            },
        };
        let after_id = match self.after_id.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(
                || {
                    refused(format!(
                        "after_id must be a whole number from 0 to {}, got {text:?}",
                        i64::MAX
                    ))
                },
            )?),
        };
        Ok(SearchQuery {
            prefix,
            since,
            done,
            limit,
            after_id,
        })
    }
}

impl SearchQuery {
    /// The search as the API's query string: every filter explicit, the window in whole seconds
    /// (or milliseconds when it has a fraction), which [`SearchParams::check`] reads exactly.
    pub fn to_params(&self) -> Vec<(&'static str, String)> {
        let since = if self.since.subsec_nanos() == 0 {
            format!("{}s", self.since.as_secs())
        } else {
            format!("{}ms", self.since.as_millis())
        };
        let mut params = vec![
            ("work_code", self.prefix.clone()),
            ("since", since),
            ("limit", self.limit.to_string()),
        ];
        if let Some(done) = self.done {
            params.push(("done", done.to_string()));
        }
        if let Some(after_id) = self.after_id {
            params.push(("after_id", after_id.to_string()));
        }
        params
    }

    /// The database search this query stands for when asked at `now`.
    pub fn to_work_search(&self, now: DateTime<Utc>) -> WorkSearch {
        WorkSearch {
            code_prefix: self.prefix.clone(),
            created_since: window_start(self.since, now),
            created_before: None,
            done: self.done,
            after_id: self.after_id,
            limit: self.limit,
        }
    }
}

/// The start of a window reaching `since` back from `now`. No work predates the epoch: a longer
/// window (even one too long to subtract) is the same search, and stays within what
/// PostgreSQL's timestamps hold.
pub fn window_start(since: Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    chrono::Duration::from_std(since)
        .ok()
        .and_then(|window| now.checked_sub_signed(window))
        .map_or(DateTime::UNIX_EPOCH, |start| {
            start.max(DateTime::UNIX_EPOCH)
        })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn params(pairs: &[(&str, &str)]) -> SearchParams {
        let mut params = SearchParams::default();
        for (name, value) in pairs {
            let value = Some((*value).to_owned());
            match *name {
                "work_code" => params.work_code = value,
                "since" => params.since = value,
                "done" => params.done = value,
                "limit" => params.limit = value,
                "after_id" => params.after_id = value,
                other => panic!("no parameter {other}"),
            }
        }
        params
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
    fn a_search_has_the_documented_defaults() {
        let query = params(&[("work_code", "api-")]).check();
        assert_eq!(
            query,
            Ok(SearchQuery {
                prefix: "api-".to_owned(),
                since: Duration::from_secs(3_600),
                done: None,
                limit: SEARCH_DEFAULT_LIMIT,
                after_id: None,
            })
        );
    }

    #[test]
    fn each_bad_parameter_says_what_is_wrong() {
        let cases: [(&[(&str, &str)], &str); 7] = [
            (&[], "missing query parameter work_code"),
            (&[("work_code", "a\0")], "NUL"),
            (&[("work_code", "a"), ("since", "soon")], "since:"),
            (&[("work_code", "a"), ("done", "yes")], "done must be"),
            (&[("work_code", "a"), ("limit", "0")], "limit must be"),
            (&[("work_code", "a"), ("limit", "1001")], "limit must be"),
            (
                &[("work_code", "a"), ("after_id", "-1")],
                "after_id must be",
            ),
        ];
        for (pairs, reason) in cases {
            let error = params(pairs).check().expect_err(reason);
            assert!(error.to_string().contains(reason), "{pairs:?}: {error}");
        }
    }

    #[test]
    fn a_query_sent_over_http_reads_back_the_same() {
        let mut query = SearchQuery {
            prefix: "api-%".to_owned(),
            since: Duration::from_secs(5_400),
            done: None,
            limit: 5,
            after_id: None,
        };
        assert_eq!(
            query.to_params(),
            vec![
                ("work_code", "api-%".to_owned()),
                ("since", "5400s".to_owned()),
                ("limit", "5".to_owned()),
            ]
        );
        for (since, done, after_id) in [
            (Duration::from_millis(1_500), Some(false), None),
            (Duration::ZERO, Some(true), Some(42)),
        ] {
            query.since = since;
            query.done = done;
            query.after_id = after_id;
            let pairs = query.to_params();
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(params(&pairs).check(), Ok(query.clone()), "{pairs:?}");
        }
    }

    #[test]
    fn windows_start_since_ago_and_never_before_the_epoch() {
        let now = Utc
            .timestamp_opt(1_800_000_000, 0)
            .single()
            .expect("a valid instant");
        let cases = [
            (Duration::ZERO, now),
            (Duration::from_secs(3_600), now - chrono::Duration::hours(1)),
            (Duration::from_secs(1_800_000_000), DateTime::UNIX_EPOCH),
            (Duration::from_secs(4_000_000_000), DateTime::UNIX_EPOCH),
            (Duration::MAX, DateTime::UNIX_EPOCH),
        ];
        for (since, expected) in cases {
            assert_eq!(window_start(since, now), expected, "{since:?}");
        }
    }
}
