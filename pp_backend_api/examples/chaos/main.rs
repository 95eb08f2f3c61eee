//! `make chaos`: pp's own fault run.
//!
//! On a fresh database, queue and Redis key prefix (the testkits'), it starts the API (with its
//! outbox relay) and two consumers (with their sweepers) as real processes, and for `--seconds`
//! (default 60) drives at once a producer burst, HTTP demands and keyed HTTP creates, and a few
//! poison messages. Meanwhile ([`faults`]) it SIGKILLs a consumer, restarts RabbitMQ,
//! crash-restarts PostgreSQL, SIGKILLs the API, stops Redis for a while and SIGKILLs the other
//! consumer. Then it lets the system drain, [`audit`]s the database against what every client
//! was told, and prints the [`report`]: acknowledged, lost, duplicated, recovered (sent without
//! an answer, yet recorded), wrong (result or events) and dead-lettered counts and the longest
//! stall. It exits 1 if anything acknowledged was lost or duplicated, or anything recorded is
//! wrong; 2 when the run itself could not be made.
//!
//! It restarts the machine's shared PostgreSQL, RabbitMQ and Redis, so it is not part of
//! `make test`. Each service's commands can be replaced (`--pg-down`, `PP_CHAOS_PG_DOWN`, …).

mod audit;
mod faults;
mod load;
mod processes;
mod report;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use diesel::prelude::*;
use pp_lib::testkit::{TestQueue, TestRedis, within};
use pp_storage::testkit::TestDatabase;
use tokio::time::Instant;

use crate::audit::Sent;
use crate::load::{DemandAnswers, KeyedAnswers, POISON};
use crate::processes::{Process, ServiceCommands, Services};
use crate::report::Report;

/// pp's fault run: real SIGKILLs and service restarts under load, then an audit.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Seconds the load runs, faults included (10 to 600); draining comes after.
    #[arg(long, env = "PP_CHAOS_SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(10..=600))]
    seconds: u64,
    #[command(flatten)]
    services: ServiceCommands,
}

/// Every producer demand adds up to this; HTTP requests use values of their own.
const PRODUCER_ADD_UP_TO: i32 = 7;

/// Producer demands a second.
const PRODUCER_RATE: f64 = 80.0;

/// The longest the system may take to drain after the faults.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// The longest the API may take to answer after a start.
const API_START_LIMIT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> ExitCode {
    pp_lib::logging::init();
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("chaos: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let run_time = Duration::from_secs(args.seconds);
    let services = Services::new(&args.services);
    let mut stage = Stage::set_up(&binaries()?).await?;
    let answers = stage.load_and_faults(run_time, &services).await?;
    let expected = answers.producer_confirmed.len() + answers.demands.accepted.len();
    let drained = stage.drain(expected).await;
    let mut notes = stage.stop().await;
    if answers.producer_exit != Some(0) {
        notes.push(format!(
            "the producer exited with {:?} (see {})",
            answers.producer_exit,
            stage.logs.join("producer.log").display()
        ));
    }
    if !drained {
        notes.push(format!("the system had not drained after {DRAIN_LIMIT:?}"));
    }
    let audit = stage.audit(&answers).await?;
    let report = Report {
        audit: &audit,
        producer_count: answers.producer_count,
        demands: &answers.demands,
        keyed: &answers.keyed,
        dead_lettered: stage.queue.ready_count(&stage.queue.dlq()).await,
        poison_sent: if answers.poisoned { POISON.len() } else { 0 },
        stall: answers.stall,
        faults: faults::described(),
        notes,
    };
    print!("{report}");
    if report.clean() {
        let _ = std::fs::remove_dir_all(&stage.logs);
    } else {
        println!("logs kept in {}", stage.logs.display());
    }
    Ok(report.passed())
}

/// Where `make chaos` built the binaries: beside this example's directory.
fn binaries() -> anyhow::Result<PathBuf> {
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
    Ok(binaries)
}

/// The services of the run (a database, a queue and a Redis prefix of its own) and pp's
/// processes over them.
struct Stage {
    db: TestDatabase,
    queue: TestQueue,
    logs: PathBuf,
    binaries: PathBuf,
    env: Vec<(String, String)>,
    base_url: String,
    api: Process,
    consumer_a: Process,
    consumer_b: Process,
    /// Kept for its key prefix: its keys are deleted when the run ends.
    _redis: TestRedis,
    /// The API's port, reserved for the run.
    _port: pp_lib::testkit::ports::PortReservation,
}

/// What the clients were told, and what happened to the producer.
struct Answers {
    producer_count: u64,
    producer_confirmed: HashSet<uuid::Uuid>,
    producer_exit: Option<i32>,
    demands: DemandAnswers,
    keyed: KeyedAnswers,
    poisoned: bool,
    stall: (Duration, Duration),
}

impl Stage {
    /// Creates the services and starts the API and both consumers; returns once the API answers.
    async fn set_up(binaries: &Path) -> anyhow::Result<Stage> {
        let db = TestDatabase::create_async().await;
        let queue = TestQueue::create().await;
        let redis = TestRedis::create();
        let logs = std::env::temp_dir().join(format!("pp-chaos-{}", queue.name()));
        std::fs::create_dir_all(&logs).context("the log directory")?;
        // The API is restarted on the same address: a port no other test is given meanwhile.
        let reservation = pp_lib::testkit::ports::reserve_port();
        let port = reservation.port();
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
            "chaos: on database {}, queue {}, Redis prefix {}; logs in {}",
            db.name(),
            queue.name(),
            redis.prefix(),
            logs.display()
        );
        let process = |name, binary: &str, args: &[&str]| {
            Process::new(name, binaries.join(binary), args, &env, &logs)
        };
        let mut stage = Stage {
            api: process("api", "pp_backend_api", &[]),
            consumer_a: process("consumer-a", "task_consumer", &["run"]),
            consumer_b: process("consumer-b", "task_consumer", &["run"]),
            db,
            queue,
            logs: logs.clone(),
            binaries: binaries.to_owned(),
            base_url: format!("http://127.0.0.1:{port}"),
            env: env.clone(),
            _redis: redis,
            _port: reservation,
        };
        stage.api.start()?;
        stage.consumer_a.start()?;
        stage.consumer_b.start()?;
        stage.api_answers().await?;
        Ok(stage)
    }

    /// Waits until the API answers `/healthz`.
    async fn api_answers(&self) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.base_url);
        within(API_START_LIMIT, async || match reqwest::get(&url).await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(response.status().to_string()),
            Err(error) => Err(error.to_string()),
        })
        .await
        .map_err(|seen| {
            let seen = seen.unwrap_or_else(|| "no answer at all".to_owned());
            anyhow::anyhow!("the API did not answer on {url} within {API_START_LIMIT:?}: {seen}")
        })
    }

    /// The load, all at once, with the faults on schedule; returns once every client is done.
    async fn load_and_faults(
        &mut self,
        run_time: Duration,
        services: &Services,
    ) -> anyhow::Result<Answers> {
        let started = Instant::now();
        let load_until = started + run_time.mul_f64(0.85);
        let producer_count = (PRODUCER_RATE * run_time.as_secs_f64() * 0.8).round() as u64;
        let ids_file = self.logs.join("producer.ids");
        let mut producer = self.producer(producer_count, &ids_file);
        producer.start()?;
        let demands = tokio::spawn(load::send_demands(
            self.base_url.clone(),
            4,
            40.0,
            load_until,
        ));
        let keyed = tokio::spawn(load::create_keyed(
            self.base_url.clone(),
            2,
            20.0,
            load_until,
            load_until + DRAIN_LIMIT / 2,
        ));
        let progress = Arc::new(Progress::default());
        let monitor = tokio::spawn(monitor(self.db.url().expose().to_owned(), progress.clone()));
        let poisoned = self.strike_on_schedule(started, run_time, services).await?;
        let demands = demands.await.context("the demand clients")?;
        let keyed = keyed.await.context("the keyed clients")?;
        let producer_exit = producer.wait(DRAIN_LIMIT).await;
        progress.finished.store(true, Ordering::Relaxed);
        let _ = monitor.await;
        Ok(Answers {
            producer_count,
            producer_confirmed: read_ids(&ids_file)?,
            producer_exit,
            demands,
            keyed,
            poisoned,
            stall: progress.longest_stall(),
        })
    }

    /// `task_producer burst` of `count` demands at [`PRODUCER_RATE`], the confirmed ids written
    /// to `ids_file`.
    fn producer(&self, count: u64, ids_file: &Path) -> Process {
        let args = [
            "burst".to_owned(),
            "--count".to_owned(),
            count.to_string(),
            "--rate".to_owned(),
            format!("{PRODUCER_RATE}"),
            "--add-up-to".to_owned(),
            PRODUCER_ADD_UP_TO.to_string(),
            "--patience".to_owned(),
            "60s".to_owned(),
            "--ids-file".to_owned(),
            ids_file.display().to_string(),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Process::new(
            "producer",
            self.binaries.join("task_producer"),
            &args,
            &self.env,
            &self.logs,
        )
    }

    /// Each fault of the schedule at its time; poison is published once the broker is back from
    /// its restart. True once the poison was sent.
    async fn strike_on_schedule(
        &mut self,
        started: Instant,
        run_time: Duration,
        services: &Services,
    ) -> anyhow::Result<bool> {
        let mut poisoned = false;
        for (at, fault) in faults::SCHEDULE {
            tokio::time::sleep_until(started + run_time.mul_f64(at)).await;
            println!(
                "chaos: {:5.1} s  {}",
                started.elapsed().as_secs_f64(),
                fault.describe()
            );
            let mut targets = faults::Targets {
                api: &mut self.api,
                consumer_a: &mut self.consumer_a,
                consumer_b: &mut self.consumer_b,
                services,
            };
            targets.strike(fault).await?;
            match fault {
                faults::Fault::KillApi => self.api_answers().await?,
                faults::Fault::RestartRabbitMq => {
                    for body in POISON {
                        let properties = pp_lib::amqp::demand_properties(uuid::Uuid::new_v4());
                        self.queue.publish_raw(body, properties).await;
                    }
                    poisoned = true;
                }
                _ => {}
            }
        }
        Ok(poisoned)
    }

    /// Waits until every acknowledged demand is recorded, nothing waits in the outbox and no
    /// work is pending, at most [`DRAIN_LIMIT`]; true when drained.
    async fn drain(&self, expected_demands: usize) -> bool {
        let expected = i64::try_from(expected_demands).unwrap_or(i64::MAX);
        within(DRAIN_LIMIT, async || {
            let url = self.db.url().expose().to_owned();
            let backlog = tokio::task::spawn_blocking(move || read_backlog(&url))
                .await
                .ok()
                .flatten();
            match backlog {
                Some(backlog) if backlog.is_drained(expected) => Ok(()),
                other => Err(other),
            }
        })
        .await
        .is_ok()
    }

    /// Stops pp's processes with SIGTERM; a note for each that did not exit 0.
    async fn stop(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        for process in [&mut self.api, &mut self.consumer_a, &mut self.consumer_b] {
            let exit = process.stop(Duration::from_secs(30)).await;
            if exit != Some(0) {
                notes.push(format!("{} exited {exit:?} on SIGTERM", process.name));
            }
        }
        notes
    }

    /// What the database holds, judged against the answers.
    async fn audit(&self, answers: &Answers) -> anyhow::Result<audit::Audit> {
        let url = self.db.url().expose().to_owned();
        let recorded = tokio::task::spawn_blocking(move || -> anyhow::Result<audit::Recorded> {
            let mut conn = PgConnection::establish(&url).context("connecting for the audit")?;
            Ok(audit::read(&mut conn)?)
        })
        .await
        .context("the audit")??;
        Ok(audit::judge(
            &recorded,
            &Sent {
                producer_add_up_to: PRODUCER_ADD_UP_TO,
                producer_confirmed: &answers.producer_confirmed,
                demands: &answers.demands,
                keyed: &answers.keyed,
            },
        ))
    }
}

fn read_ids(path: &Path) -> anyhow::Result<HashSet<uuid::Uuid>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| {
            uuid::Uuid::parse_str(line).with_context(|| format!("{line:?} in {}", path.display()))
        })
        .collect()
}

/// What is done, and what still waits to be.
#[derive(Debug, QueryableByName)]
struct Backlog {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    done: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    demands: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    outbox: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pending: i64,
}

impl Backlog {
    fn is_drained(&self, expected_demands: i64) -> bool {
        self.demands >= expected_demands && self.outbox == 0 && self.pending == 0
    }
}

/// The backlog, or `None` while the database does not answer.
fn read_backlog(url: &str) -> Option<Backlog> {
    let mut conn = PgConnection::establish(url).ok()?;
    diesel::sql_query(
        "select (select count(*) from works where done) as done, \
                (select count(*) from works where demand_id is not null) as demands, \
                (select count(*) from demand_outbox where published_on is null) as outbox, \
                (select count(*) from works where not done) as pending",
    )
    .get_result(&mut conn)
    .ok()
}

/// Done works seen over time, to find the longest stretch without progress.
#[derive(Default)]
struct Progress {
    longest_stall_ms: AtomicI64,
    stall_started_ms: AtomicI64,
    finished: AtomicBool,
}

impl Progress {
    fn longest_stall(&self) -> (Duration, Duration) {
        let millis = |value: i64| Duration::from_millis(u64::try_from(value).unwrap_or(0));
        (
            millis(self.longest_stall_ms.load(Ordering::Relaxed)),
            millis(self.stall_started_ms.load(Ordering::Relaxed)),
        )
    }

    /// A stall from `since` (into the run) lasting `stall`: kept if the longest yet.
    fn saw_stall(&self, stall: Duration, since: Duration) {
        let millis = i64::try_from(stall.as_millis()).unwrap_or(i64::MAX);
        if millis > self.longest_stall_ms.load(Ordering::Relaxed) {
            self.longest_stall_ms.store(millis, Ordering::Relaxed);
            let from = i64::try_from(since.as_millis()).unwrap_or(0);
            self.stall_started_ms.store(from, Ordering::Relaxed);
        }
    }
}

/// Samples the count of done works every 250 ms until the run finishes (a failed count, while
/// PostgreSQL restarts, counts as no progress) and keeps the longest time it did not move.
async fn monitor(url: String, progress: Arc<Progress>) {
    let started = Instant::now();
    let mut last_change = Instant::now();
    let mut last_done = None;
    let mut samples = tokio::time::interval(Duration::from_millis(250));
    while !progress.finished.load(Ordering::Relaxed) {
        samples.tick().await;
        let url = url.clone();
        let done = tokio::task::spawn_blocking(move || read_backlog(&url))
            .await
            .ok()
            .flatten()
            .map(|backlog| backlog.done);
        let now = Instant::now();
        if done.is_some() && done != last_done {
            last_done = done;
            last_change = now;
        } else {
            progress.saw_stall(now - last_change, last_change - started);
        }
    }
}
