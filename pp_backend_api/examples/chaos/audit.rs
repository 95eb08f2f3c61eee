//! The audit at the end of a chaos run, like a Jepsen checker's counters: what was acknowledged,
//! what of it the database lacks (lost) or holds twice (duplicated), what was sent without an
//! answer yet recorded (recovered), what is recorded wrong, and what was dead-lettered.
//!
//! Two steps: [`read`] takes what the database holds into memory ([`Recorded`]), and [`judge`],
//! a pure function, checks it against what the clients were told ([`Sent`]). Whether each work
//! is recorded right (its sum, its three events) is pp's one integrity check,
//! `pp_lib::db::integrity::wrong_works`, the one every test runs too.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid as SqlUuid};
use pp_lib::db::integrity::{Integrity, wrong_works};
use uuid::Uuid;

use crate::load::{DemandAnswers, KeyedAnswers};

/// Wrong works, lost and duplicated requests the report names, at most.
const EXAMPLES: usize = 10;

/// One path's counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub acknowledged: usize,
    pub lost: usize,
    pub duplicated: usize,
    pub recovered: usize,
}

impl Counts {
    /// Requests recorded (once or more): the acknowledged not lost, and the recovered.
    pub fn recorded(&self) -> usize {
        (self.acknowledged + self.recovered).saturating_sub(self.lost)
    }
}

/// The whole verdict.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Audit {
    pub producer: Counts,
    pub demands: Counts,
    pub keyed: Counts,
    /// Works recorded wrong (result or events), works still pending, requests answered with an
    /// error yet recorded, works no request asked for, keys naming another work.
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

    fn example(&mut self, text: String) {
        if self.examples.len() < EXAMPLES {
            self.examples.push(text);
        }
    }
}

/// A recorded work, as far as the audit cares.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct RecordedWork {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Integer)]
    pub add_up_to: i32,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub demand_id: Option<Uuid>,
}

/// What the database holds after the run.
#[derive(Debug, Default)]
pub struct Recorded {
    pub works: Vec<RecordedWork>,
    /// Idempotency key → the work it names.
    pub keys: BTreeMap<String, i64>,
    /// Works not done.
    pub pending: usize,
    /// pp's integrity check over every work.
    pub integrity: Integrity,
}

/// What the clients were told.
#[derive(Debug)]
pub struct Sent<'a> {
    /// The `add_up_to` of every producer demand.
    pub producer_add_up_to: i32,
    /// The ids the broker confirmed to the producer.
    pub producer_confirmed: &'a HashSet<Uuid>,
    pub demands: &'a DemandAnswers,
    pub keyed: &'a KeyedAnswers,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    work_id: i64,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Reads what the database holds.
pub fn read(conn: &mut PgConnection) -> QueryResult<Recorded> {
    let works = diesel::sql_query("select id, add_up_to, demand_id from works").load(conn)?;
    let keys: Vec<KeyRow> =
        diesel::sql_query("select key, work_id from idempotency_keys").load(conn)?;
    let pending: Count =
        diesel::sql_query("select count(*) as n from works where not done").get_result(conn)?;
    Ok(Recorded {
        works,
        keys: keys.into_iter().map(|row| (row.key, row.work_id)).collect(),
        pending: usize::try_from(pending.n).unwrap_or(usize::MAX),
        integrity: wrong_works(conn, EXAMPLES)?,
    })
}

/// The sum of the counts a log gives before `what` on its lines (`"… 3 redelivered demand(s)
/// already recorded: …"` counts 3): what the processes did that the database cannot show.
pub fn sum_logged(log: &str, what: &str) -> u64 {
    log.lines()
        .filter_map(|line| {
            let at = line.find(what)?;
            line[..at].split_whitespace().last()?.parse::<u64>().ok()
        })
        .sum()
}

/// What was recorded, checked against what was sent.
pub fn judge(recorded: &Recorded, sent: &Sent<'_>) -> Audit {
    let index = Index::of(&recorded.works);
    let mut audit = Audit::default();
    judge_producer(&index, sent, &mut audit);
    judge_demands(&index, sent.demands, &mut audit);
    judge_keyed(&index, &recorded.keys, sent.keyed, &mut audit);
    judge_integrity(recorded, sent, &mut audit);
    audit
}

/// The works by `add_up_to`, and how many works each demand id has.
struct Index<'a> {
    by_value: BTreeMap<i32, Vec<&'a RecordedWork>>,
    per_demand: BTreeMap<Uuid, usize>,
}

impl<'a> Index<'a> {
    fn of(works: &'a [RecordedWork]) -> Self {
        let mut index = Index {
            by_value: BTreeMap::new(),
            per_demand: BTreeMap::new(),
        };
        for work in works {
            index.by_value.entry(work.add_up_to).or_default().push(work);
            if let Some(id) = work.demand_id {
                *index.per_demand.entry(id).or_default() += 1;
            }
        }
        index
    }

    fn works_of(&self, add_up_to: i32) -> &[&'a RecordedWork] {
        self.by_value.get(&add_up_to).map_or(&[], Vec::as_slice)
    }

    fn works_of_demand(&self, id: &Uuid) -> usize {
        self.per_demand.get(id).copied().unwrap_or(0)
    }
}

/// Every confirmed id recorded once; unconfirmed ones that were recorded are recovered.
fn judge_producer(index: &Index<'_>, sent: &Sent<'_>, audit: &mut Audit) {
    audit.producer.acknowledged = sent.producer_confirmed.len();
    for id in sent.producer_confirmed {
        match index.works_of_demand(id) {
            0 => {
                audit.producer.lost += 1;
                audit.example(format!("producer demand {id} lost"));
            }
            1 => {}
            _ => {
                audit.producer.duplicated += 1;
                audit.example(format!("producer demand {id} recorded twice"));
            }
        }
    }
    audit.producer.recovered = index
        .works_of(sent.producer_add_up_to)
        .iter()
        .filter(|work| {
            work.demand_id
                .is_some_and(|id| !sent.producer_confirmed.contains(&id))
        })
        .count();
}

/// Each accepted demand's message id recorded once, one work per value; an unanswered one
/// recorded once is recovered; a refused one recorded is wrong.
fn judge_demands(index: &Index<'_>, demands: &DemandAnswers, audit: &mut Audit) {
    audit.demands.acknowledged = demands.accepted.len();
    for (value, id) in &demands.accepted {
        let recorded = index.works_of(*value).len();
        if index.works_of_demand(id) == 0 {
            audit.demands.lost += 1;
            audit.example(format!("HTTP demand {id} (add_up_to {value}) lost"));
        } else if recorded > 1 {
            audit.demands.duplicated += 1;
            audit.example(format!("HTTP demand add_up_to {value}: {recorded} works"));
        }
    }
    for value in &demands.unanswered {
        match index.works_of(*value).len() {
            0 => {}
            1 => audit.demands.recovered += 1,
            n => {
                audit.demands.duplicated += 1;
                audit.example(format!("unanswered demand add_up_to {value}: {n} works"));
            }
        }
    }
    for value in &demands.refused {
        if !index.works_of(*value).is_empty() {
            audit.wrong += 1;
            audit.wrong_details.push(format!(
                "HTTP demand add_up_to {value} was refused, yet recorded"
            ));
        }
    }
}

/// The acknowledged work exists, is the key's, and is the only one of its value.
fn judge_keyed(
    index: &Index<'_>,
    keys: &BTreeMap<String, i64>,
    keyed: &KeyedAnswers,
    audit: &mut Audit,
) {
    audit.keyed.acknowledged = keyed.created.len();
    for (value, (key, id)) in &keyed.created {
        let recorded: Vec<i64> = index.works_of(*value).iter().map(|work| work.id).collect();
        if !recorded.contains(id) {
            audit.keyed.lost += 1;
            audit.example(format!("keyed create {key}: work {id} lost"));
        } else if recorded.len() > 1 {
            audit.keyed.duplicated += 1;
            audit.example(format!("keyed create {key}: works {recorded:?}"));
        }
        if keys.get(key) != Some(id) {
            audit.wrong += 1;
            audit.wrong_details.push(format!(
                "key {key} names work {:?}, not {id}",
                keys.get(key)
            ));
        }
    }
    audit.keyed.recovered = keyed
        .unanswered
        .iter()
        .filter(|value| !index.works_of(**value).is_empty())
        .count();
}

/// Every work done and right, and none that no request asked for.
fn judge_integrity(recorded: &Recorded, sent: &Sent<'_>, audit: &mut Audit) {
    if recorded.pending > 0 {
        audit.wrong += recorded.pending;
        audit
            .wrong_details
            .push(format!("{}: works still pending", recorded.pending));
    }
    let integrity = &recorded.integrity;
    if integrity.wrong > 0 {
        audit.wrong += usize::try_from(integrity.wrong).unwrap_or(usize::MAX);
        audit.wrong_details.push(format!(
            "{}: works recorded wrong (result or events)",
            integrity.wrong
        ));
        for wrong in &integrity.examples {
            audit.wrong_details.push(format!(
                "  work {} ({}): {}",
                wrong.id,
                wrong.work_code,
                wrong.why.join("; ")
            ));
        }
    }
    let (demands, keyed) = (sent.demands, sent.keyed);
    let values: BTreeSet<i32> = demands
        .accepted
        .keys()
        .chain(&demands.unanswered)
        .chain(&demands.refused)
        .chain(keyed.created.keys())
        .chain(&keyed.unanswered)
        .copied()
        .collect();
    let strangers = recorded
        .works
        .iter()
        .filter(|work| {
            work.add_up_to != sent.producer_add_up_to && !values.contains(&work.add_up_to)
        })
        .count();
    if strangers > 0 {
        audit.wrong += strangers;
        audit
            .wrong_details
            .push(format!("{strangers}: works no request asked for"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRODUCER: i32 = 7;

    fn work(id: i64, add_up_to: i32, demand_id: Option<Uuid>) -> RecordedWork {
        RecordedWork {
            id,
            add_up_to,
            demand_id,
        }
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// A run's answers: producer demands 1 and 2 confirmed; HTTP demand 100 accepted as id 10,
    /// 101 unanswered, 102 refused; keyed create 200 acknowledged as work 20 under "k", 201
    /// never acknowledged.
    fn answers() -> (HashSet<Uuid>, DemandAnswers, KeyedAnswers) {
        let confirmed = [id(1), id(2)].into_iter().collect();
        let demands = DemandAnswers {
            accepted: [(100, id(10))].into_iter().collect(),
            unanswered: vec![101],
            refused: vec![102],
        };
        let keyed = KeyedAnswers {
            created: [(200, ("k".to_owned(), 20))].into_iter().collect(),
            unanswered: vec![201],
            retries: 3,
        };
        (confirmed, demands, keyed)
    }

    /// Exactly what the answers call for, and nothing else.
    fn faithful() -> Recorded {
        Recorded {
            works: vec![
                work(1, PRODUCER, Some(id(1))),
                work(2, PRODUCER, Some(id(2))),
                work(3, 100, Some(id(10))),
                work(20, 200, None),
            ],
            keys: [("k".to_owned(), 20)].into_iter().collect(),
            ..Recorded::default()
        }
    }

    fn judged(recorded: &Recorded) -> Audit {
        let (confirmed, demands, keyed) = answers();
        judge(
            recorded,
            &Sent {
                producer_add_up_to: PRODUCER,
                producer_confirmed: &confirmed,
                demands: &demands,
                keyed: &keyed,
            },
        )
    }

    #[test]
    fn counts_logged_before_a_phrase_are_summed_and_other_lines_ignored() {
        let log = "[t INFO task_consumer::consume] 3 redelivered demand(s) already recorded: ok\n\
                   [t INFO task_consumer::consume] connected to RabbitMQ\n\
                   [t INFO task_consumer::consume] 12 redelivered demand(s) already recorded: ok\n\
                   redelivered demand(s) already recorded with no count\n";

        assert_eq!(
            sum_logged(log, "redelivered demand(s) already recorded"),
            15
        );
        assert_eq!(sum_logged("", "anything"), 0);
    }

    #[test]
    fn recorded_counts_what_was_acknowledged_and_not_lost_and_what_was_recovered() {
        let counts = Counts {
            acknowledged: 10,
            lost: 1,
            duplicated: 2,
            recovered: 3,
        };

        assert_eq!(counts.recorded(), 12);
    }

    #[test]
    fn a_faithful_record_has_nothing_lost_duplicated_or_wrong() {
        let audit = judged(&faithful());

        assert_eq!(
            (audit.lost(), audit.duplicated(), audit.wrong),
            (0, 0, 0),
            "{audit:?}"
        );
        assert_eq!(audit.producer.acknowledged, 2);
        assert_eq!(audit.demands.acknowledged, 1);
        assert_eq!(audit.keyed.acknowledged, 1);
    }

    #[test]
    fn a_confirmed_demand_missing_is_lost_and_one_recorded_twice_is_duplicated() {
        let mut recorded = faithful();
        recorded.works.retain(|work| work.id != 1);
        recorded.works.push(work(4, PRODUCER, Some(id(2))));

        let audit = judged(&recorded);

        assert_eq!(audit.producer.lost, 1);
        assert_eq!(audit.producer.duplicated, 1);
        assert!(audit.examples.iter().any(|text| text.contains("lost")));
    }

    #[test]
    fn what_was_sent_without_an_answer_yet_recorded_is_recovered() {
        let mut recorded = faithful();
        recorded.works.push(work(5, PRODUCER, Some(id(3))));
        recorded.works.push(work(6, 101, Some(id(11))));
        recorded.works.push(work(7, 201, None));

        let audit = judged(&recorded);

        let recovered = (
            audit.producer.recovered,
            audit.demands.recovered,
            audit.keyed.recovered,
        );
        assert_eq!(recovered, (1, 1, 1));
        assert_eq!((audit.lost(), audit.duplicated(), audit.wrong), (0, 0, 0));
    }

    #[test]
    fn an_accepted_http_demand_recorded_twice_is_duplicated() {
        let mut recorded = faithful();
        recorded.works.push(work(8, 100, Some(id(12))));

        assert_eq!(judged(&recorded).demands.duplicated, 1);
    }

    #[test]
    fn a_keyed_create_whose_work_is_gone_is_lost_and_a_key_naming_another_is_wrong() {
        let mut recorded = faithful();
        recorded.works.retain(|work| work.id != 20);
        recorded.works.push(work(21, 200, None));
        recorded.keys.insert("k".to_owned(), 21);

        let audit = judged(&recorded);

        assert_eq!(audit.keyed.lost, 1);
        assert_eq!(audit.wrong, 1, "{:?}", audit.wrong_details);
        assert!(audit.wrong_details[0].contains("names work Some(21), not 20"));
    }

    #[test]
    fn refused_yet_recorded_pending_strangers_and_wrong_works_are_each_wrong() {
        let mut recorded = faithful();
        recorded.works.push(work(9, 102, Some(id(13))));
        recorded.works.push(work(30, 999, None));
        recorded.pending = 2;
        recorded.integrity.wrong = 4;

        let audit = judged(&recorded);

        assert_eq!(audit.wrong, 1 + 1 + 2 + 4, "{:?}", audit.wrong_details);
        let details = audit.wrong_details.join("\n");
        for expected in [
            "was refused, yet recorded",
            "1: works no request asked for",
            "2: works still pending",
            "4: works recorded wrong",
        ] {
            assert!(details.contains(expected), "{expected:?} in {details}");
        }
    }
}
