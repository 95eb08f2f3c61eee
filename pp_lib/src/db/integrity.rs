//! The integrity check of what pp recorded: [`wrong_works`] lists every work that breaks one of
//! the rules below, so a test, the fault run, a benchmark and an operator (`pp_storage verify`)
//! ask the same question the same way.
//!
//! The rules, judged by [`judge`] on one work's facts:
//!
//! - a done work's result is `1 + … + add_up_to`, and it has exactly three events: one
//!   `compute/start`, one `compute/stop` and one `compute/result` whose value is the result, each
//!   under the work's code;
//! - a pending work has no result and no events, and came over HTTP (a demand's work is recorded
//!   done in the transaction that creates it);
//! - a work's code says where it came from: `consumer-` for a demand's, `api-` for the others.
//!
//! The works are read a batch at a time in id order (keyset paging on the primary key), so the
//! check runs in bounded memory over any number of works.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text};

use crate::compute::sum_up_to;
use crate::event::EventVariable;
use crate::work::WorkOrigin;

/// Works read per statement.
const BATCH: i64 = 10_000;

/// What is known of one work: its row, and a summary of its events.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct WorkFacts {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub work_code: String,
    #[diesel(sql_type = Integer)]
    pub add_up_to: i32,
    #[diesel(sql_type = Bool)]
    pub done: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub result: Option<i64>,
    #[diesel(sql_type = Bool)]
    pub from_demand: bool,
    /// Events of the work, of any variable.
    #[diesel(sql_type = BigInt)]
    pub events: i64,
    #[diesel(sql_type = BigInt)]
    pub starts: i64,
    #[diesel(sql_type = BigInt)]
    pub stops: i64,
    /// `compute/result` events, and the value of one of them.
    #[diesel(sql_type = BigInt)]
    pub results: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub result_value: Option<String>,
    /// Events filed under another code than the work's.
    #[diesel(sql_type = BigInt)]
    pub misfiled: i64,
}

/// A work that breaks a rule, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrongWork {
    pub id: i64,
    pub work_code: String,
    /// Every rule it breaks, in words.
    pub why: Vec<String>,
}

/// What the check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Integrity {
    /// Works read.
    pub checked: u64,
    /// Works that break a rule.
    pub wrong: u64,
    /// The first of them, in full (as many as were asked for).
    pub examples: Vec<WrongWork>,
}

/// Checks every work against the rules; keeps the first `examples` wrong ones in full.
pub fn wrong_works(conn: &mut PgConnection, examples: usize) -> QueryResult<Integrity> {
    let mut found = Integrity::default();
    let mut after = 0_i64;
    loop {
        let batch: Vec<WorkFacts> = diesel::sql_query(FACTS)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(BATCH)
            .load(conn)?;
        let Some(last) = batch.last() else {
            return Ok(found);
        };
        after = last.id;
        found.checked += batch.len() as u64;
        for wrong in batch.iter().filter_map(judge) {
            found.wrong += 1;
            if found.examples.len() < examples {
                found.examples.push(wrong);
            }
        }
    }
}

/// One batch of works after `$1`, `$2` of them, each with its events summed up.
const FACTS: &str = "select w.id, w.work_code, w.add_up_to, w.done, w.result, \
        w.demand_id is not null as from_demand, \
        count(e.id) as events, \
        count(*) filter (where e.variable = 'compute/start') as starts, \
        count(*) filter (where e.variable = 'compute/stop') as stops, \
        count(*) filter (where e.variable = 'compute/result') as results, \
        max(e.value) filter (where e.variable = 'compute/result') as result_value, \
        count(*) filter (where e.work_code <> w.work_code) as misfiled \
    from (select * from works where id > $1 order by id limit $2) w \
    left join events e on e.work_id = w.id \
    group by w.id, w.work_code, w.add_up_to, w.done, w.result, w.demand_id \
    order by w.id";

/// The rules a work breaks, or `None` when it keeps them all.
pub fn judge(facts: &WorkFacts) -> Option<WrongWork> {
    let mut why = Vec::new();
    let origin = if facts.from_demand {
        WorkOrigin::Consumer
    } else {
        WorkOrigin::Api
    };
    if !facts.work_code.starts_with(origin.code_prefix()) {
        why.push(format!(
            "its code does not start with {}",
            origin.code_prefix()
        ));
    }
    if facts.done {
        judge_done(facts, &mut why);
    } else {
        if facts.from_demand {
            why.push("a demand's work is pending".to_owned());
        }
        if let Some(result) = facts.result {
            why.push(format!("pending with a result ({result})"));
        }
        if facts.events > 0 {
            why.push(format!("pending with {} event(s)", facts.events));
        }
    }
    (!why.is_empty()).then(|| WrongWork {
        id: facts.id,
        work_code: facts.work_code.clone(),
        why,
    })
}

fn judge_done(facts: &WorkFacts, why: &mut Vec<String>) {
    let expected = sum_up_to(facts.add_up_to).ok();
    if facts.result != expected || expected.is_none() {
        why.push(format!(
            "its result is {}, not {}",
            shown(facts.result),
            shown(expected)
        ));
    }
    let variables = [
        (EventVariable::ComputeStart, facts.starts),
        (EventVariable::ComputeStop, facts.stops),
        (EventVariable::ComputeResult, facts.results),
    ];
    for (variable, count) in variables {
        if count != 1 {
            why.push(format!("{count} {} event(s), not 1", variable.as_str()));
        }
    }
    let named = facts.starts + facts.stops + facts.results;
    if facts.events != named {
        why.push(format!(
            "{} event(s) of other variables",
            facts.events - named
        ));
    }
    let result_text = facts.result.map(|result| result.to_string());
    if facts.results == 1 && facts.result_value != result_text {
        why.push(format!(
            "its compute/result event says {}, its result is {}",
            shown(facts.result_value.as_deref()),
            shown(facts.result)
        ));
    }
    if facts.misfiled > 0 {
        why.push(format!(
            "{} event(s) filed under another code",
            facts.misfiled
        ));
    }
}

/// A value as the reasons write it: itself, or `none`.
fn shown(value: Option<impl std::fmt::Display>) -> String {
    value.map_or_else(|| "none".to_owned(), |value| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(add_up_to: i32, result: i64) -> WorkFacts {
        WorkFacts {
            id: 1,
            work_code: "consumer-abcdefghij".to_owned(),
            add_up_to,
            done: true,
            result: Some(result),
            from_demand: true,
            events: 3,
            starts: 1,
            stops: 1,
            results: 1,
            result_value: Some(result.to_string()),
            misfiled: 0,
        }
    }

    fn pending_api() -> WorkFacts {
        WorkFacts {
            work_code: "api-abcdefghij".to_owned(),
            done: false,
            result: None,
            from_demand: false,
            events: 0,
            starts: 0,
            stops: 0,
            results: 0,
            result_value: None,
            ..done(4, 10)
        }
    }

    fn why(facts: &WorkFacts) -> Vec<String> {
        judge(facts).map(|wrong| wrong.why).unwrap_or_default()
    }

    #[test]
    fn a_done_work_with_its_sum_and_three_events_and_a_pending_api_work_are_right() {
        assert_eq!(judge(&done(4, 10)), None);
        assert_eq!(judge(&done(0, 0)), None);
        assert_eq!(judge(&pending_api()), None);
    }

    #[test]
    fn each_broken_rule_is_named() {
        let cases: [(&str, WorkFacts, &str); 9] = [
            (
                "a wrong sum",
                WorkFacts {
                    result_value: Some("11".into()),
                    ..done(4, 11)
                },
                "its result is 11, not 10",
            ),
            (
                "no events",
                WorkFacts {
                    events: 0,
                    starts: 0,
                    stops: 0,
                    results: 0,
                    result_value: None,
                    ..done(4, 10)
                },
                "0 compute/start event(s), not 1",
            ),
            (
                "a fourth event",
                WorkFacts {
                    events: 4,
                    stops: 2,
                    ..done(4, 10)
                },
                "2 compute/stop event(s), not 1",
            ),
            (
                "a foreign event",
                WorkFacts {
                    events: 4,
                    ..done(4, 10)
                },
                "1 event(s) of other variables",
            ),
            (
                "a result event that disagrees",
                WorkFacts {
                    result_value: Some("9".into()),
                    ..done(4, 10)
                },
                "its compute/result event says 9, its result is 10",
            ),
            (
                "a misfiled event",
                WorkFacts {
                    misfiled: 1,
                    ..done(4, 10)
                },
                "filed under another code",
            ),
            (
                "a pending demand",
                WorkFacts {
                    from_demand: true,
                    work_code: "consumer-x".into(),
                    ..pending_api()
                },
                "a demand's work is pending",
            ),
            (
                "a pending work with events",
                WorkFacts {
                    events: 2,
                    ..pending_api()
                },
                "pending with 2 event(s)",
            ),
            (
                "a code from the other origin",
                WorkFacts {
                    work_code: "api-x".into(),
                    ..done(4, 10)
                },
                "does not start with consumer-",
            ),
        ];
        for (case, facts, expected) in cases {
            let why = why(&facts);
            assert!(
                why.iter().any(|reason| reason.contains(expected)),
                "{case}: expected {expected:?} in {why:?}"
            );
        }
    }
}
