//! `make bench-dashboard`'s timing of every query the dashboard makes, on the database
//! `--database-url` (or `DATABASE_URL`) names: the benchmark seeds a million works there first.
//!
//! Each query is the library function the API calls, run `--runs` times (or `PP_BENCH_RUNS`,
//! default 20) on one connection after a warm-up run; it prints p50 and max in milliseconds, and
//! whether the max is under 50 ms. Exits 1 if any is not.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use pp_backend_api::dashboard::overview::read_database;
use pp_lib::config::{DatabaseConfig, SweepWindow};
use pp_lib::db::PgConnection;
use pp_lib::db::backlogs::read_backlogs;
use pp_lib::db::stats::{
    Counting, PENDING_API_WORKS, PENDING_OTHER_WORKS, count_matches, estimate_table_rows,
    read_figures, table_size,
};
use pp_lib::db::throughput::{finished_per_second, finished_within};
use pp_lib::db::works::{WorkSearch, find_work, search_works};

/// Times every query the dashboard makes.
#[derive(Debug, Parser)]
#[command(name = "dashboard_queries")]
struct Args {
    #[command(flatten)]
    database: DatabaseConfig,
    /// Timed runs of each query, after one warm-up run (1 to 10000).
    #[arg(long, env = "PP_BENCH_RUNS", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    runs: u32,
}

/// The bound every query must stay under.
const BUDGET: Duration = Duration::from_millis(50);

/// A query to time, its result thrown away.
type Query = Box<dyn Fn(&mut PgConnection) -> anyhow::Result<()>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut conn = pp_lib::db::establish(&args.database.url, args.database.connect_timeout)?;
    let queries = queries(Fixture::read(&mut conn)?);
    println!(
        "{:<56} {:>9} {:>9}  under {} ms",
        "query",
        "p50 ms",
        "max ms",
        BUDGET.as_millis()
    );
    let mut all_under = true;
    for (name, query) in &queries {
        let (p50, max) = time(&mut conn, query, args.runs).context(*name)?;
        let under = max < BUDGET;
        all_under &= under;
        println!(
            "{name:<56} {:>9.2} {:>9.2}  {}",
            p50.as_secs_f64() * 1000.0,
            max.as_secs_f64() * 1000.0,
            if under { "yes" } else { "NO" }
        );
    }
    if !all_under {
        anyhow::bail!("a dashboard query took {} ms or more", BUDGET.as_millis());
    }
    Ok(())
}

/// What the queries ask about: a work of the seed, and the dashboard's window.
struct Fixture {
    id: i64,
    code: String,
    hour_ago: DateTime<Utc>,
    sweep_window: Duration,
}

impl Fixture {
    fn read(conn: &mut PgConnection) -> anyhow::Result<Fixture> {
        let hour_ago = Utc::now() - chrono::Duration::hours(1);
        let works = search_works(conn, &WorkSearch::new("api-", hour_ago))?;
        let work = works
            .first()
            .context("the seed has API works in the last hour")?;
        Ok(Fixture {
            id: work.id,
            code: work.work_code.clone(),
            hour_ago,
            sweep_window: SweepWindow::default().duration,
        })
    }

    /// The works page's search: `prefix`, the last hour, 50 a page.
    fn search(&self, prefix: &str, done: Option<bool>) -> WorkSearch {
        WorkSearch {
            done,
            limit: 50,
            ..WorkSearch::new(prefix, self.hour_ago)
        }
    }
}

/// `run`, its result thrown away: a row of the table.
fn query<T>(
    name: &'static str,
    run: impl Fn(&mut PgConnection) -> Result<T, pp_lib::Error> + 'static,
) -> (&'static str, Query) {
    (
        name,
        Box::new(move |conn| run(conn).map(drop).map_err(Into::into)),
    )
}

/// Every query of the dashboard's pages, as the API runs them.
fn queries(fixture: Fixture) -> Vec<(&'static str, Query)> {
    let window = fixture.sweep_window;
    let (id, code) = (fixture.id, fixture.code.clone());
    let fixture = std::rc::Rc::new(fixture);
    let search = |prefix: &'static str, done: Option<bool>| {
        let fixture = fixture.clone();
        move |conn: &mut PgConnection| Ok(search_works(conn, &fixture.search(prefix, done))?)
    };
    let exact = fixture.search(&code, None);
    vec![
        query(
            "overview: the whole database part (one transaction)",
            move |conn| Ok(read_database(conn, window)?),
        ),
        query(
            "  figures: pending, done, events, done in the last hour",
            |conn| Ok(read_figures(conn)?),
        ),
        query("    table size of works (catalogue, statistics)", |conn| {
            Ok(table_size(conn, "works")?)
        }),
        query("    rows of events (estimate)", |conn| {
            Ok(estimate_table_rows(conn, "events")?)
        }),
        query("    pending API works (partial index, capped)", |conn| {
            Ok(count_matches(
                conn,
                PENDING_API_WORKS,
                Counting::DEFAULT.exact_matches,
            )?)
        }),
        query("    other pending works (partial index)", |conn| {
            Ok(count_matches(
                conn,
                PENDING_OTHER_WORKS,
                Counting::DEFAULT.exact_matches,
            )?)
        }),
        query("    finished in the last hour (ring)", |conn| {
            Ok(finished_within(conn, 3_600)?)
        }),
        query("  chart: finished per second, 15 min (ring)", |conn| {
            Ok(finished_per_second(conn, 900)?)
        }),
        query(
            "  backlogs: outbox, sweeper, beyond the window",
            move |conn| Ok(read_backlogs(conn, window, Counting::DEFAULT)?),
        ),
        query(
            "works page: search every work, 1h limit 50",
            search("", None),
        ),
        query(
            "works page: search 'api-' 1h limit 50",
            search("api-", None),
        ),
        query(
            "works page: search 'consumer-' 1h limit 50",
            search("consumer-", None),
        ),
        query(
            "works page: search 'api-' pending 1h limit 50",
            search("api-", Some(false)),
        ),
        query(
            "works page: search 'consumer-a' done 1h limit 50",
            search("consumer-a", Some(true)),
        ),
        query("works page: search an exact code", move |conn| {
            Ok(search_works(conn, &exact)?)
        }),
        query("work page: the work", move |conn| Ok(find_work(conn, id)?)),
        query("work page: its events", move |conn| {
            Ok(pp_lib::db::events::list_events(conn, id)?)
        }),
    ]
}

/// Runs `query` once to warm up, then `runs` times; the median and the longest.
fn time(conn: &mut PgConnection, query: &Query, runs: u32) -> anyhow::Result<(Duration, Duration)> {
    query(conn).context("warming up")?;
    let mut times = Vec::with_capacity(runs as usize);
    for _ in 0..runs {
        let started = Instant::now();
        query(conn)?;
        times.push(started.elapsed());
    }
    times.sort();
    let p50 = times[times.len() / 2];
    let max = times[times.len() - 1];
    Ok((p50, max))
}
