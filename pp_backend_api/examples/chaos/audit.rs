//! The audit at the end of a chaos run, like a Jepsen checker's counters: what was acknowledged,
//! what of it the database lacks (lost) or holds twice (duplicated), what was sent without an
//! answer yet recorded (recovered), what is recorded wrong, and what was dead-lettered.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use uuid::Uuid;

use crate::load::{DemandAnswers, KeyedAnswers};

/// One path's counts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub recovered: usize,
}

/// The whole verdict.
#[derive(Debug, Default)]
pub struct Audit {
    pub producer: Counts,
    pub demands: Counts,
    pub keyed: Counts,
    /// Done works whose result is not the sum, or whose events are not the three right ones;
    /// works still pending; requests answered with an error yet recorded.
    pub wrong: usize,
    pub wrong_details: Vec<String>,
    /// Examples of what was lost or duplicated, for the report.
    pub examples: Vec<String>,
}

impl Audit {
    pub fn lost(&self) -> usize {
        self.producer.lost + self.demands.lost + self.keyed.lost
    }

    pub fn duplicated(&self) -> usize {
        self.producer.duplicated + self.demands.duplicated + self.keyed.duplicated
    }
}

#[derive(QueryableByName)]
struct Recorded {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    add_up_to: i32,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    demand_id: Option<Uuid>,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    work_id: i64,
}

/// Everything the database holds, checked against what the clients were told.
pub fn audit(
    conn: &mut PgConnection,
    producer_add_up_to: i32,
    producer_confirmed: &HashSet<Uuid>,
    demands: &DemandAnswers,
    keyed: &KeyedAnswers,
) -> QueryResult<Audit> {
    let works: Vec<Recorded> =
        diesel::sql_query("select id, add_up_to, demand_id from works").load(conn)?;
    let mut by_value: BTreeMap<i32, Vec<&Recorded>> = BTreeMap::new();
    let mut demand_ids: BTreeMap<Uuid, usize> = BTreeMap::new();
    for work in &works {
        by_value.entry(work.add_up_to).or_default().push(work);
        if let Some(id) = work.demand_id {
            *demand_ids.entry(id).or_default() += 1;
        }
    }
    let mut audit = Audit::default();

    // The producer: every confirmed id recorded once; unconfirmed ones recorded are recovered.
    audit.producer.acknowledged = producer_confirmed.len();
    for id in producer_confirmed {
        match demand_ids.get(id).copied().unwrap_or(0) {
            0 => {
                audit.producer.lost += 1;
                example(&mut audit.examples, format!("producer demand {id} lost"));
            }
            1 => {}
            _ => {
                audit.producer.duplicated += 1;
                example(
                    &mut audit.examples,
                    format!("producer demand {id} recorded twice"),
                );
            }
        }
    }
    audit.producer.recovered = by_value.get(&producer_add_up_to).map_or(0, |works| {
        works
            .iter()
            .filter(|work| {
                work.demand_id
                    .is_some_and(|id| !producer_confirmed.contains(&id))
            })
            .count()
    });

    // HTTP demands: each accepted one's message id recorded once, and one work per value.
    audit.demands.acknowledged = demands.accepted.len();
    for (value, id) in &demands.accepted {
        let recorded = by_value.get(value).map_or(0, Vec::len);
        if demand_ids.get(id).copied().unwrap_or(0) == 0 {
            audit.demands.lost += 1;
            example(
                &mut audit.examples,
                format!("HTTP demand {id} (add_up_to {value}) lost"),
            );
        } else if recorded > 1 {
            audit.demands.duplicated += 1;
            example(
                &mut audit.examples,
                format!("HTTP demand add_up_to {value}: {recorded} works"),
            );
        }
    }
    for value in &demands.unanswered {
        match by_value.get(value).map_or(0, Vec::len) {
            0 => {}
            1 => audit.demands.recovered += 1,
            n => {
                audit.demands.duplicated += 1;
                example(
                    &mut audit.examples,
                    format!("unanswered demand add_up_to {value}: {n} works"),
                );
            }
        }
    }
    for value in &demands.refused {
        if by_value.contains_key(value) {
            audit.wrong += 1;
            audit.wrong_details.push(format!(
                "HTTP demand add_up_to {value} was refused, yet recorded"
            ));
        }
    }

    // Keyed creates: the acknowledged work exists, is the key's, and is the only one.
    let keys: Vec<KeyRow> =
        diesel::sql_query("select key, work_id from idempotency_keys").load(conn)?;
    let keys: BTreeMap<String, i64> = keys.into_iter().map(|row| (row.key, row.work_id)).collect();
    audit.keyed.acknowledged = keyed.created.len();
    for (value, (key, id)) in &keyed.created {
        let recorded: Vec<i64> = by_value
            .get(value)
            .map(|works| works.iter().map(|work| work.id).collect())
            .unwrap_or_default();
        if !recorded.contains(id) {
            audit.keyed.lost += 1;
            example(
                &mut audit.examples,
                format!("keyed create {key}: work {id} lost"),
            );
        } else if recorded.len() > 1 {
            audit.keyed.duplicated += 1;
            example(
                &mut audit.examples,
                format!("keyed create {key}: works {recorded:?}"),
            );
        }
        if keys.get(key) != Some(id) {
            audit.wrong += 1;
            audit.wrong_details.push(format!(
                "key {key} names work {:?}, not {id}",
                keys.get(key)
            ));
        }
    }
    for value in &keyed.unanswered {
        if by_value.get(value).is_some_and(|works| !works.is_empty()) {
            audit.keyed.recovered += 1;
        }
    }

    // Every work done, with its sum, and its three events (the result's is the sum).
    let checks = [
        (
            "works still pending",
            "select count(*) as n from works where not done",
        ),
        (
            "done works whose result is not the sum",
            "select count(*) as n from works where done and \
             result is distinct from add_up_to::bigint * (add_up_to + 1) / 2",
        ),
        (
            "done works without exactly three events",
            "select count(*) as n from works w where done and \
             (select count(*) from events e where e.work_id = w.id) <> 3",
        ),
        (
            "done works whose compute/result event is not their result",
            "select count(*) as n from works w where done and not exists \
             (select 1 from events e where e.work_id = w.id \
              and e.variable = 'compute/result' and e.value = w.result::text)",
        ),
    ];
    for (what, sql) in checks {
        let count: Count = diesel::sql_query(sql).get_result(conn)?;
        if count.n > 0 {
            audit.wrong += usize::try_from(count.n).unwrap_or(usize::MAX);
            audit.wrong_details.push(format!("{}: {what}", count.n));
        }
    }
    // Works no request made (not the producer's, nor from a value a client used).
    let values: BTreeSet<i32> = demands
        .accepted
        .keys()
        .chain(&demands.unanswered)
        .chain(&demands.refused)
        .chain(keyed.created.keys())
        .chain(&keyed.unanswered)
        .copied()
        .collect();
    let strangers = works
        .iter()
        .filter(|work| work.add_up_to != producer_add_up_to && !values.contains(&work.add_up_to))
        .count();
    if strangers > 0 {
        audit.wrong += strangers;
        audit
            .wrong_details
            .push(format!("{strangers}: works no request asked for"));
    }
    Ok(audit)
}

fn example(examples: &mut Vec<String>, text: String) {
    if examples.len() < 10 {
        examples.push(text);
    }
}
