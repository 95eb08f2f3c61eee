//! `make bench-dashboard`'s timing of every query the dashboard makes, on the database
//! `DATABASE_URL` names (the benchmark seeds a million works there first).
//!
//! Each query is the library function the API calls, run `PP_BENCH_RUNS` times (default 20) on
//! one connection after a warm-up run; it prints p50 and max in milliseconds, and whether the
//! max is under 50 ms. Exits 1 if any is not.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use pp_backend_api::dashboard::overview::read_database;
use pp_lib::config::{DatabaseConfig, SecretUrl};
use pp_lib::db::PgConnection;
use pp_lib::db::dashboard::read_backlogs;
use pp_lib::db::stats::{
    Counting, PENDING_API_WORKS, PENDING_OTHER_WORKS, count_matches, estimate_table_rows,
    read_figures, table_size,
};
use pp_lib::db::throughput::{finished_per_second, finished_within};
use pp_lib::db::works::{WorkSearch, find_work, search_works};

/// The bound every query must stay under.
const BUDGET: Duration = Duration::from_millis(50);

type Query = Box<dyn Fn(&mut PgConnection) -> anyhow::Result<()>>;

fn main() -> anyhow::Result<()> {
    let url: SecretUrl = std::env::var("DATABASE_URL")
        .context("DATABASE_URL names the seeded database")?
        .parse()
        .map_err(|error: String| anyhow::anyhow!(error))?;
    let runs: usize = std::env::var("PP_BENCH_RUNS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20);
    let config = DatabaseConfig::for_url(url);
    let mut conn = pp_lib::db::establish(&config.url, config.connect_timeout)?;
    let sweep_window = Duration::from_secs(6 * 3600);
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let (some_id, some_code) = {
        let works = search_works(&mut conn, &WorkSearch::new("api-", hour_ago))?;
        let work = works
            .first()
            .context("the seed has API works in the last hour")?;
        (work.id, work.work_code.clone())
    };
    let search = move |prefix: &str, done: Option<bool>| WorkSearch {
        done,
        limit: 50,
        ..WorkSearch::new(prefix, hour_ago)
    };
    let queries: Vec<(&str, Query)> = vec![
        (
            "overview: the whole database part (one transaction)",
            Box::new(move |conn| {
                read_database(conn, sweep_window)?;
                Ok(())
            }),
        ),
        (
            "  figures: pending, done, events, done in the last hour",
            Box::new(|conn| {
                read_figures(conn)?;
                Ok(())
            }),
        ),
        (
            "    table size of works (catalogue, statistics)",
            Box::new(|conn| {
                table_size(conn, "works")?;
                Ok(())
            }),
        ),
        (
            "    rows of events (estimate)",
            Box::new(|conn| {
                estimate_table_rows(conn, "events")?;
                Ok(())
            }),
        ),
        (
            "    pending API works (partial index, capped)",
            Box::new(|conn| {
                count_matches(conn, PENDING_API_WORKS, Counting::DEFAULT.exact_matches)?;
                Ok(())
            }),
        ),
        (
            "    other pending works (partial index)",
            Box::new(|conn| {
                count_matches(conn, PENDING_OTHER_WORKS, Counting::DEFAULT.exact_matches)?;
                Ok(())
            }),
        ),
        (
            "    finished in the last hour (ring)",
            Box::new(|conn| {
                finished_within(conn, 3_600)?;
                Ok(())
            }),
        ),
        (
            "  chart: finished per second, 15 min (ring)",
            Box::new(|conn| {
                finished_per_second(conn, 900)?;
                Ok(())
            }),
        ),
        (
            "  backlogs: outbox, sweeper, beyond the window",
            Box::new(move |conn| {
                read_backlogs(conn, sweep_window, Counting::DEFAULT)?;
                Ok(())
            }),
        ),
        (
            "works page: search 'api-' 1h limit 50 (and no prefix)",
            Box::new(move |conn| {
                search_works(conn, &search("api-", None))?;
                Ok(())
            }),
        ),
        (
            "works page: search 'consumer-' 1h limit 50 (and no prefix)",
            Box::new(move |conn| {
                search_works(conn, &search("consumer-", None))?;
                Ok(())
            }),
        ),
        (
            "works page: search 'api-' pending 1h limit 50",
            Box::new(move |conn| {
                search_works(conn, &search("api-", Some(false)))?;
                Ok(())
            }),
        ),
        (
            "works page: search 'consumer-a' done 1h limit 50",
            Box::new(move |conn| {
                search_works(conn, &search("consumer-a", Some(true)))?;
                Ok(())
            }),
        ),
        (
            "works page: search an exact code",
            Box::new(move |conn| {
                search_works(conn, &search(&some_code, None))?;
                Ok(())
            }),
        ),
        (
            "work page: the work",
            Box::new(move |conn| {
                find_work(conn, some_id)?;
                Ok(())
            }),
        ),
        (
            "work page: its events",
            Box::new(move |conn| {
                pp_lib::db::events::list_events(conn, some_id)?;
                Ok(())
            }),
        ),
    ];
    println!(
        "{:<56} {:>9} {:>9}  under {} ms",
        "query",
        "p50 ms",
        "max ms",
        BUDGET.as_millis()
    );
    let mut all_under = true;
    for (name, query) in &queries {
        query(&mut conn).with_context(|| format!("warming up {name}"))?;
        let mut times: Vec<Duration> = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            query(&mut conn).with_context(|| format!("running {name}"))?;
            times.push(started.elapsed());
        }
        times.sort();
        let p50 = times[times.len() / 2];
        let max = times[times.len() - 1];
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
