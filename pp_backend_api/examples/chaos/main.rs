//! `make chaos`: pp's own fault run.
//!
//! On a fresh database, queue and Redis key prefix, it starts the API (with its outbox relay) and
//! two consumers (with their sweepers), and for `PP_CHAOS_SECONDS` (default 60) drives at once a
//! producer burst, HTTP demands and keyed HTTP creates, and a few poison messages. Meanwhile it
//! SIGKILLs a consumer, restarts RabbitMQ, crash-restarts PostgreSQL, SIGKILLs the API, stops
//! Redis for a while and SIGKILLs the other consumer — real processes, real restarts. Then it
//! lets the system drain and audits the database against what every client was told: it prints
//! acknowledged, lost, duplicated, recovered (sent without an answer, yet recorded), wrong
//! (result or events) and dead-lettered counts and the longest stall, and exits 1 if anything
//! acknowledged was lost or duplicated, or anything recorded is wrong.
//!
//! It restarts the machine's shared PostgreSQL, RabbitMQ and Redis, so it is not part of
//! `make test`. Each service's commands can be replaced through the environment
//! (`PP_CHAOS_PG_DOWN`/`_UP`, `PP_CHAOS_RABBITMQ_DOWN`/`_UP`, `PP_CHAOS_REDIS_DOWN`/`_UP`).

mod audit;
mod load;
mod processes;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use diesel::prelude::*;
use pp_lib::testkit::{TestQueue, TestRedis};
use pp_storage::testkit::TestDatabase;
use tokio::time::Instant;

use crate::load::POISON;
use crate::processes::{Process, Service};

/// Every producer demand adds up to this; HTTP requests use values of their own.
const PRODUCER_ADD_UP_TO: i32 = 7;

/// The longest the system may take to drain after the faults.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pp_lib::logging::init();
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chaos: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// What goes wrong.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillConsumerA,
    RestartRabbitMq,
    CrashRestartPostgres,
    KillApi,
    StopRedis,
    KillConsumerB,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::KillConsumerA => "consumer A SIGKILLed, restarted 1 s later",
            Fault::RestartRabbitMq => "RabbitMQ restarted",
            Fault::CrashRestartPostgres => "PostgreSQL crash-stopped and restarted",
            Fault::KillApi => "API SIGKILLed, restarted 1 s later",
            Fault::StopRedis => "Redis stopped for 5 s",
            Fault::KillConsumerB => "consumer B SIGKILLed, restarted 1 s later",
        }
    }
}

/// When each fault strikes, as a share of the run.
const FAULTS: [(f64, Fault); 6] = [
    (0.10, Fault::KillConsumerA),
    (0.20, Fault::RestartRabbitMq),
    (0.35, Fault::CrashRestartPostgres),
    (0.50, Fault::KillApi),
    (0.60, Fault::StopRedis),
    (0.75, Fault::KillConsumerB),
];

async fn run() -> anyhow::Result<bool> {
    let seconds: f64 = std::env::var("PP_CHAOS_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .filter(|seconds: &f64| (10.0..=600.0).contains(seconds))
        .unwrap_or(60.0);
    let run_time = Duration::from_secs_f64(seconds);
    let binaries = std::env::current_exe()
        .context("where am I")?
        .parent()
        .and_then(|examples| examples.parent())
        .map(PathBuf::from)
        .context("the build directory")?;
    for binary in ["pp_backend_api", "task_consumer", "task_producer"] {
        if !binaries.join(binary).exists() {
            bail!(
                "{binary} is not built in {}: run `make chaos`",
                binaries.display()
            );
        }
    }

    let db = tokio::task::spawn_blocking(TestDatabase::create)
        .await
        .context("creating the database")?;
    let queue = TestQueue::create().await;
    let redis = TestRedis::create();
    let logs = std::env::temp_dir().join(format!("pp-chaos-{}", queue.name()));
    std::fs::create_dir_all(&logs).context("the log directory")?;
    let port = free_port()?;
    let base_url = format!("http://127.0.0.1:{port}");
    let env: Vec<(String, String)> = [
        ("DATABASE_URL", db.url().expose().to_owned()),
        ("AMQP_URL", queue.url().expose().to_owned()),
        ("PP_QUEUE", queue.name().to_owned()),
        ("REDIS_URL", redis.url().expose().to_owned()),
        ("PP_REDIS_PREFIX", redis.prefix().to_owned()),
        ("PP_HTTP_ADDR", format!("127.0.0.1:{port}")),
        ("PP_OUTBOX_INTERVAL", "200ms".to_owned()),
        ("PP_CONSUMER_METRICS_ADDR", "off".to_owned()),
        ("PP_SWEEP_EVERY", "1s".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    println!(
        "chaos: {seconds:.0} s on database {}, queue {}, Redis prefix {}; logs in {}",
        db.name(),
        queue.name(),
        redis.prefix(),
        logs.display()
    );

    let mut api = Process::new("api", binaries.join("pp_backend_api"), &[], &env, &logs);
    let mut consumer_a = Process::new(
        "consumer-a",
        binaries.join("task_consumer"),
        &["run"],
        &env,
        &logs,
    );
    let mut consumer_b = Process::new(
        "consumer-b",
        binaries.join("task_consumer"),
        &["run"],
        &env,
        &logs,
    );
    api.start()?;
    consumer_a.start()?;
    consumer_b.start()?;
    wait_for_api(&base_url, Duration::from_secs(30)).await?;

    // The load, all at once.
    let started = Instant::now();
    let load_until = started + run_time.mul_f64(0.85);
    let producer_rate = 80.0;
    let producer_count = (producer_rate * seconds * 0.8).round() as u64;
    let ids_file = logs.join("producer.ids");
    let producer_args = [
        "burst".to_owned(),
        "--count".to_owned(),
        producer_count.to_string(),
        "--rate".to_owned(),
        format!("{producer_rate}"),
        "--add-up-to".to_owned(),
        PRODUCER_ADD_UP_TO.to_string(),
        "--patience".to_owned(),
        "60s".to_owned(),
        "--ids-file".to_owned(),
        ids_file.display().to_string(),
    ];
    let producer_args: Vec<&str> = producer_args.iter().map(String::as_str).collect();
    let mut producer = Process::new(
        "producer",
        binaries.join("task_producer"),
        &producer_args,
        &env,
        &logs,
    );
    producer.start()?;
    let demands = tokio::spawn(load::send_demands(base_url.clone(), 4, 40.0, load_until));
    let keyed = tokio::spawn(load::create_keyed(
        base_url.clone(),
        2,
        20.0,
        load_until,
        load_until + DRAIN_LIMIT / 2,
    ));
    let progress = Arc::new(Progress::default());
    let monitor = tokio::spawn(monitor(db.url().expose().to_owned(), progress.clone()));

    // The faults, on schedule.
    let rabbitmq = Service::rabbitmq();
    let postgres = Service::postgres()?;
    let redis_service = Service::redis();
    let mut poisoned = false;
    for (at, fault) in FAULTS {
        tokio::time::sleep_until(started + run_time.mul_f64(at)).await;
        println!(
            "chaos: {:5.1} s  {}",
            started.elapsed().as_secs_f64(),
            fault.describe()
        );
        match fault {
            Fault::KillConsumerA => restart_killed(&mut consumer_a).await?,
            Fault::KillConsumerB => restart_killed(&mut consumer_b).await?,
            Fault::KillApi => {
                restart_killed(&mut api).await?;
                wait_for_api(&base_url, Duration::from_secs(30)).await?;
            }
            Fault::RestartRabbitMq => {
                rabbitmq.down().await?;
                rabbitmq.up().await?;
                // Poison, once the broker is back: it must end in the dead-letter queue.
                for body in POISON {
                    queue
                        .publish_raw(
                            body,
                            pp_lib::amqp::message::demand_properties(uuid::Uuid::new_v4()),
                        )
                        .await;
                }
                poisoned = true;
            }
            Fault::CrashRestartPostgres => {
                postgres.down().await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                postgres.up().await?;
            }
            Fault::StopRedis => {
                redis_service.down().await?;
                tokio::time::sleep(Duration::from_secs(5)).await;
                redis_service.up().await?;
            }
        }
    }

    // The clients finish; then the system drains.
    let demands = demands.await.context("the demand clients")?;
    let keyed = keyed.await.context("the keyed clients")?;
    let producer_exit = producer.wait(DRAIN_LIMIT).await;
    let confirmed = read_ids(&ids_file)?;
    let expected = confirmed.len() + demands.accepted.len();
    let drained = drain(db.url().expose(), expected).await;
    progress.finished.store(1, Ordering::Relaxed);
    let _ = monitor.await;

    let dead_lettered = queue
        .ready_count(&queue.topology().dead_letter_queue())
        .await;
    let mut unclean_stops = Vec::new();
    for process in [&mut api, &mut consumer_a, &mut consumer_b] {
        let exit = process.stop(Duration::from_secs(30)).await;
        if exit != Some(0) {
            unclean_stops.push(format!("{} exited {exit:?} on SIGTERM", process.name));
        }
    }
    let sent = (
        demands.accepted.len() + demands.unanswered.len() + demands.refused.len(),
        demands.unanswered.len(),
        demands.refused.len(),
    );
    let keyed_sent = (
        keyed.created.len() + keyed.unanswered.len(),
        keyed.retries,
        keyed.unanswered.len(),
    );
    let audit = {
        let url = db.url().expose().to_owned();
        let confirmed = confirmed.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<audit::Audit> {
            let mut conn = PgConnection::establish(&url).context("connecting for the audit")?;
            Ok(audit::audit(
                &mut conn,
                PRODUCER_ADD_UP_TO,
                &confirmed,
                &demands,
                &keyed,
            )?)
        })
        .await
        .context("the audit")??
    };

    // The report.
    let row = |name: &str, a: usize, b: usize, c: usize| {
        println!("{name:<40} {a:>10} {b:>14} {c:>15} {:>8}", a + b + c);
    };
    println!();
    println!(
        "{:<40} {:>10} {:>14} {:>15} {:>8}",
        "", "producer", "HTTP demands", "keyed creates", "total"
    );
    let (p, d, k) = (audit.producer, audit.demands, audit.keyed);
    println!(
        "{:<40} {producer_count:>10} {:>14} {:>15}",
        "sent", sent.0, keyed_sent.0
    );
    println!(
        "{:<40} {:>10} {:>14} {:>15}",
        "  no answer (API down or cut) / retried", "-", sent.1, keyed_sent.1
    );
    println!(
        "{:<40} {:>10} {:>14} {:>15}",
        "  refused (an error status) / gave up", "-", sent.2, keyed_sent.2
    );
    row(
        "acknowledged",
        p.acknowledged,
        d.acknowledged,
        k.acknowledged,
    );
    row("lost", p.lost, d.lost, k.lost);
    row("duplicated", p.duplicated, d.duplicated, k.duplicated);
    row(
        "recovered (no answer, yet recorded)",
        p.recovered,
        d.recovered,
        k.recovered,
    );
    println!(
        "wrong (result, events, pending, refused yet recorded): {}",
        audit.wrong
    );
    for detail in &audit.wrong_details {
        println!("  {detail}");
    }
    for example in &audit.examples {
        println!("  {example}");
    }
    let poison = if poisoned { POISON.len() } else { 0 };
    println!("dead-lettered: {dead_lettered} (poison messages sent: {poison})");
    let (stall, stall_at) = progress.longest_stall();
    println!(
        "longest stall: {:.1} s with work outstanding (from {:.1} s into the run)",
        stall.as_secs_f64(),
        stall_at.as_secs_f64()
    );
    println!(
        "faults: {}",
        FAULTS
            .iter()
            .map(|(_, fault)| fault.describe())
            .collect::<Vec<_>>()
            .join("; ")
    );
    if producer_exit != Some(0) {
        println!(
            "note: the producer exited with {producer_exit:?} (see {})",
            producer.log().display()
        );
    }
    for stop in &unclean_stops {
        println!("note: {stop}");
    }
    if !drained {
        println!("note: the system had not drained after {DRAIN_LIMIT:?}");
    }
    let ok = audit.lost() == 0 && audit.duplicated() == 0 && audit.wrong == 0;
    println!(
        "verdict: {}",
        if ok {
            "nothing acknowledged was lost or duplicated, and everything recorded is right"
        } else {
            "FAILED"
        }
    );
    if ok && dead_lettered as usize == poison {
        let _ = std::fs::remove_dir_all(&logs);
    } else {
        println!("logs kept in {}", logs.display());
    }
    Ok(ok)
}

async fn restart_killed(process: &mut Process) -> anyhow::Result<()> {
    process.kill().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    process.start()
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("a free port")?;
    Ok(listener.local_addr().context("its port")?.port())
}

async fn wait_for_api(base_url: &str, patience: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(response) = reqwest::get(format!("{base_url}/healthz")).await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API did not answer on {base_url} within {patience:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_ids(path: &std::path::Path) -> anyhow::Result<HashSet<uuid::Uuid>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            uuid::Uuid::parse_str(line).with_context(|| format!("{line:?} in {}", path.display()))
        })
        .collect()
}

/// Done works seen over time, to find the longest stretch without progress.
#[derive(Default)]
struct Progress {
    longest_stall_ms: AtomicI64,
    stall_started_ms: AtomicI64,
    done: AtomicI64,
    finished: AtomicI64,
}

impl Progress {
    fn longest_stall(&self) -> (Duration, Duration) {
        let millis = |value: i64| Duration::from_millis(u64::try_from(value).unwrap_or(0));
        (
            millis(self.longest_stall_ms.load(Ordering::Relaxed)),
            millis(self.stall_started_ms.load(Ordering::Relaxed)),
        )
    }
}

/// Counts done works every 250 ms (a failed count, while PostgreSQL restarts, counts as no
/// progress) and keeps the longest time the count did not move while work was outstanding.
async fn monitor(url: String, progress: Arc<Progress>) {
    let started = Instant::now();
    let mut last_change = Instant::now();
    let mut last_done = -1;
    while progress.finished.load(Ordering::Relaxed) == 0 {
        let url = url.clone();
        let done = tokio::task::spawn_blocking(move || count_done(&url))
            .await
            .ok()
            .flatten();
        let now = Instant::now();
        match done {
            Some(done) if done != last_done => {
                last_done = done;
                last_change = now;
                progress.done.store(done, Ordering::Relaxed);
            }
            _ => {
                let stall = now - last_change;
                let millis = i64::try_from(stall.as_millis()).unwrap_or(i64::MAX);
                if millis > progress.longest_stall_ms.load(Ordering::Relaxed) {
                    progress.longest_stall_ms.store(millis, Ordering::Relaxed);
                    let from = i64::try_from((last_change - started).as_millis()).unwrap_or(0);
                    progress.stall_started_ms.store(from, Ordering::Relaxed);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn count_done(url: &str) -> Option<i64> {
    #[derive(QueryableByName)]
    struct Done {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = PgConnection::establish(url).ok()?;
    diesel::sql_query("select count(*) as n from works where done")
        .get_result::<Done>(&mut conn)
        .ok()
        .map(|done| done.n)
}

/// Waits until every acknowledged demand is recorded, nothing waits in the outbox and no work is
/// pending, at most [`DRAIN_LIMIT`]; true when drained.
async fn drain(url: &str, expected_demands: usize) -> bool {
    #[derive(QueryableByName)]
    struct Backlog {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        demands: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        outbox: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        pending: i64,
    }
    let deadline = Instant::now() + DRAIN_LIMIT;
    while Instant::now() < deadline {
        let url = url.to_owned();
        let backlog = tokio::task::spawn_blocking(move || {
            let mut conn = PgConnection::establish(&url).ok()?;
            diesel::sql_query(
                "select (select count(*) from works where demand_id is not null) as demands, \
                        (select count(*) from demand_outbox where published_on is null) as outbox, \
                        (select count(*) from works where not done) as pending",
            )
            .get_result::<Backlog>(&mut conn)
            .ok()
        })
        .await
        .ok()
        .flatten();
        if let Some(backlog) = backlog
            && backlog.demands >= i64::try_from(expected_demands).unwrap_or(i64::MAX)
            && backlog.outbox == 0
            && backlog.pending == 0
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}
