//! What the user sees: JSON for scripts, aligned tables for people.
//!
//! JSON is the API's own serialisation of pp_lib's types, compact, one document per line: over
//! HTTP or from the database, `cli_01 get 7 --output json` prints exactly the body of
//! `GET /work/7`. Tables name their columns after the JSON fields, so what a person reads is
//! what a script would select with jq; timestamps are shown in UTC.

use std::io::{self, IsTerminal, Write};

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use pp_lib::contract::{DemandAccepted, DemandStatus};
use pp_lib::db::stats::Stats;
use pp_lib::event::Event;
use pp_lib::work::Work;
use serde::Serialize;

/// How the answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns, for people.
    Table,
    /// The API's JSON, one document on one line, for scripts.
    Json,
}

impl OutputFormat {
    /// Table on a terminal, JSON when stdout is a pipe or a file.
    pub fn for_stdout() -> Self {
        if io::stdout().is_terminal() {
            OutputFormat::Table
        } else {
            OutputFormat::Json
        }
    }
}

/// What a command answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Work(Work),
    Works(Vec<Work>),
    Events(Vec<Event>),
    Stats(Stats),
    Demand(DemandAccepted),
    DemandStatus(DemandStatus),
}

/// Prints `answer` in `format`, then flushes.
pub fn write_answer(out: &mut impl Write, answer: &Answer, format: OutputFormat) -> io::Result<()> {
    let text = match format {
        OutputFormat::Json => to_json(answer),
        OutputFormat::Table => to_table(answer),
    };
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// The answer as the API serialises it, on one line.
pub fn to_json(answer: &Answer) -> String {
    let mut json = match answer {
        Answer::Work(work) => json_line(work),
        Answer::Works(works) => json_line(works),
        Answer::Events(events) => json_line(events),
        Answer::Stats(stats) => json_line(stats),
        Answer::Demand(demand) => json_line(demand),
        Answer::DemandStatus(status) => json_line(status),
    };
    json.push('\n');
    json
}

fn json_line(value: &impl Serialize) -> String {
    // Plain structs with string keys, integers, text and epoch-second timestamps: serialising
    // them into memory cannot fail.
    serde_json::to_string(value).expect("pp's answers always serialise to JSON")
}

/// The answer as aligned text: one record as `field  value` lines, a list as columns.
pub fn to_table(answer: &Answer) -> String {
    match answer {
        Answer::Work(work) => record(&work_fields(work)),
        Answer::Works(works) if works.is_empty() => "no works match\n".to_owned(),
        Answer::Works(works) => table(
            &[
                ("id", Align::Right),
                ("work_code", Align::Left),
                ("add_up_to", Align::Right),
                ("done", Align::Left),
                ("result", Align::Right),
                ("created_on", Align::Left),
            ],
            works
                .iter()
                .map(|work| {
                    vec![
                        work.id.to_string(),
                        work.work_code.clone(),
                        work.add_up_to.to_string(),
                        work.done.to_string(),
                        optional(work.result),
                        timestamp(work.created_on),
                    ]
                })
                .collect(),
        ),
        Answer::Events(events) if events.is_empty() => "no events\n".to_owned(),
        Answer::Events(events) => table(
            &[
                ("id", Align::Right),
                ("variable", Align::Left),
                ("value", Align::Right),
                ("created_on", Align::Left),
            ],
            events
                .iter()
                .map(|event| {
                    vec![
                        event.id.to_string(),
                        event.variable.clone(),
                        event.value.clone(),
                        timestamp(event.created_on),
                    ]
                })
                .collect(),
        ),
        Answer::Stats(stats) => record(&[
            ("pending_works", stats.pending_works.to_string()),
            ("done_works", stats.done_works.to_string()),
            ("events", stats.events.to_string()),
            ("done_last_hour", stats.done_last_hour.to_string()),
            (
                "api_works_beyond_sweep_window",
                stats.api_works_beyond_sweep_window.to_string(),
            ),
        ]),
        Answer::Demand(demand) => record(&[
            ("message_id", demand.message_id.to_string()),
            ("add_up_to", demand.add_up_to.to_string()),
            ("done", demand.done.to_string()),
        ]),
        Answer::DemandStatus(status) => record(&[
            ("message_id", status.message_id.to_string()),
            ("add_up_to", status.add_up_to.to_string()),
            ("done", status.done.to_string()),
            ("state", status.state.as_str().to_owned()),
            ("accepted_on", timestamp(status.accepted_on)),
            (
                "published_on",
                status
                    .published_on
                    .map_or_else(|| NONE.to_owned(), timestamp),
            ),
        ]),
    }
}

fn work_fields(work: &Work) -> [(&'static str, String); 8] {
    [
        ("id", work.id.to_string()),
        ("work_code", work.work_code.clone()),
        ("add_up_to", work.add_up_to.to_string()),
        ("done", work.done.to_string()),
        ("result", optional(work.result)),
        ("created_on", timestamp(work.created_on)),
        ("updated_on", timestamp(work.updated_on)),
        ("demand_id", optional(work.demand_id)),
    ]
}

/// A missing value, as a table shows it.
const NONE: &str = "-";

fn optional(value: Option<impl ToString>) -> String {
    value.map_or_else(|| NONE.to_owned(), |value| value.to_string())
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// `name  value` lines, the values aligned.
fn record(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (name, value) in fields {
        text.push_str(&format!("{name:<width$}  {value}\n"));
    }
    text
}

/// A header line and one line per row, columns two spaces apart; the last column is not padded.
fn table(columns: &[(&str, Align)], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = columns
        .iter()
        .map(|(name, _)| name.chars().count())
        .collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = columns.iter().map(|(name, _)| (*name).to_owned()).collect();
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, ((cell, width), (_, align))) in row.iter().zip(&widths).zip(columns).enumerate()
        {
            if index > 0 {
                line.push_str("  ");
            }
            let pad = width.saturating_sub(cell.chars().count());
            match align {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(seconds, 0)
            .single()
            .expect("a valid instant")
    }

    fn work(id: i64, code: &str, add_up_to: i32, result: Option<i64>) -> Work {
        Work {
            id,
            work_code: code.to_owned(),
            add_up_to,
            done: result.is_some(),
            created_on: at(1_634_115_736),
            updated_on: at(1_634_115_736),
            result,
            demand_id: None,
        }
    }

    #[test]
    fn json_is_the_apis_body_on_one_line() {
        let answer = Answer::Work(work(21, "api-bjq8euwsEA", 4, None));

        assert_eq!(
            to_json(&answer),
            "{\"id\":21,\"work_code\":\"api-bjq8euwsEA\",\"add_up_to\":4,\"done\":false,\
             \"created_on\":1634115736,\"updated_on\":1634115736,\"result\":null,\"demand_id\":null}\n"
        );
        assert_eq!(to_json(&Answer::Works(Vec::new())), "[]\n");
    }

    #[test]
    fn a_work_is_a_record_of_its_fields() {
        let answer = Answer::Work(work(21, "api-bjq8euwsEA", 4, Some(10)));

        assert_eq!(
            to_table(&answer),
            "\
id          21
work_code   api-bjq8euwsEA
add_up_to   4
done        true
result      10
created_on  2021-10-13 09:02:16 UTC
updated_on  2021-10-13 09:02:16 UTC
demand_id   -
"
        );
    }

    #[test]
    fn works_are_columns_with_numbers_on_the_right() {
        let answer = Answer::Works(vec![
            work(9, "api-a", 4, Some(10)),
            work(10, "consumer-bbbbbbbbbb", 100, None),
        ]);

        assert_eq!(
            to_table(&answer),
            "\
id  work_code            add_up_to  done   result  created_on
 9  api-a                        4  true       10  2021-10-13 09:02:16 UTC
10  consumer-bbbbbbbbbb        100  false       -  2021-10-13 09:02:16 UTC
"
        );
    }

    #[test]
    fn events_stats_and_demands_have_tables_too() {
        let events = Answer::Events(vec![Event {
            id: 1,
            work_code: "api-a".to_owned(),
            variable: "compute/result".to_owned(),
            value: "10".to_owned(),
            created_on: at(1_634_115_736),
            work_id: 9,
        }]);
        let stats = Answer::Stats(Stats {
            pending_works: 2,
            done_works: 1,
            events: 3,
            done_last_hour: 1,
            api_works_beyond_sweep_window: 0,
        });
        let demand = Answer::Demand(DemandAccepted {
            message_id: uuid::Uuid::nil(),
            add_up_to: 2,
            done: false,
        });

        assert_eq!(
            to_table(&events),
            "id  variable        value  created_on\n \
             1  compute/result     10  2021-10-13 09:02:16 UTC\n"
        );
        assert_eq!(
            to_table(&stats),
            "pending_works                  2\ndone_works                     1\n\
             events                         3\ndone_last_hour                 1\n\
             api_works_beyond_sweep_window  0\n"
        );
        assert_eq!(
            to_table(&demand),
            "message_id  00000000-0000-0000-0000-000000000000\nadd_up_to   2\ndone        false\n"
        );
        assert_eq!(
            to_json(&demand),
            "{\"message_id\":\"00000000-0000-0000-0000-000000000000\",\"add_up_to\":2,\"done\":false}\n"
        );
    }

    #[test]
    fn empty_lists_say_so_in_a_table_and_are_empty_arrays_in_json() {
        assert_eq!(to_table(&Answer::Works(Vec::new())), "no works match\n");
        assert_eq!(to_table(&Answer::Events(Vec::new())), "no events\n");
        assert_eq!(to_json(&Answer::Events(Vec::new())), "[]\n");
    }

    #[test]
    fn a_failed_write_is_an_error_not_a_panic() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        let written = write_answer(&mut Closed, &Answer::Works(Vec::new()), OutputFormat::Json);

        assert_eq!(
            written.map_err(|error| error.kind()),
            Err(io::ErrorKind::BrokenPipe)
        );
    }
}
