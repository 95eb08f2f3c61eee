//! `make chaos` and `make cluster-chaos`: pp's own fault runs.
//!
//! On a fresh database, queue and Redis key prefix (the testkits'), it starts the API (with its
//! outbox relay) and consumers (with their sweepers) as real processes, and for `--seconds`
//! drives at once a producer burst, HTTP demands and keyed HTTP creates, and a few poison
//! messages, while [`faults`] strike on a schedule:
//!
//! - `make chaos` (the shared services, one API, two consumers; 60 s): it SIGKILLs a consumer,
//!   restarts RabbitMQ, crash-restarts PostgreSQL, SIGKILLs the API, stops Redis for a while and
//!   SIGKILLs the other consumer. It restarts the machine's shared PostgreSQL, RabbitMQ and
//!   Redis, so it is not part of `make test`. Each service's commands can be replaced
//!   (`--pg-down`, `PP_CHAOS_PG_DOWN`, …).
//! - `make cluster-chaos` (`--cluster`: a three-node RabbitMQ cluster of the run's own, quorum
//!   queues, two API replicas relaying, three consumers sweeping; 150 s): it SIGKILLs the node
//!   that leads the queue and boots it again, SIGKILLs the node the consumers are on, SIGSTOPs
//!   the busiest node past the net tick time and resumes it, and restarts every node one after
//!   the other. The shared services are not touched. `--short` (what CI runs) kills the leader
//!   once.
//!
//! Then it lets the system drain, [`audit`]s the database against what every client was told,
//! and prints the [`report`]: acknowledged, recorded, lost, duplicated effects, duplicate
//! deliveries absorbed, recovered (sent without an answer, yet recorded), wrong (result or
//! events) and dead-lettered counts and the longest stall (the longest time a path, demands or
//! the sweepers' works, did not move while work waited on it). It exits 1 if anything
//! acknowledged was lost or recorded twice, or anything recorded is wrong, or, on the cluster, a
//! stall lasted over 10 s (not counting a frozen node's first net tick time, before which the
//! cluster itself cannot tell it from a slow one); 2 when the run itself could not be made.

mod audit;
mod faults;
mod load;
mod processes;
mod progress;
mod report;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use diesel::prelude::*;
use pp_lib::config::QueueType;
use pp_lib::testkit::{TestCluster, TestQueue, TestRedis, within};
use pp_storage::testkit::TestDatabase;
use tokio::time::Instant;

use crate::audit::{Sent, sum_logged};
use crate::faults::{Broker, Fault};
use crate::load::{DemandAnswers, KeyedAnswers, LoadEnd, POISON};
use crate::processes::{Process, ServiceCommands, Services};
use crate::progress::{Sampler, read_backlog};
use crate::report::Report;

/// pp's fault run: real SIGKILLs, service restarts or broker nodes killed under load, then an
/// audit.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// Seconds the load runs at least (10 to 600; it runs on until the last fault is over),
    /// draining comes after [default: 60; with --cluster 150, and 30 with --short].
    #[arg(long, env = "PP_CHAOS_SECONDS",
          value_parser = clap::value_parser!(u64).range(10..=600))]
    seconds: Option<u64>,
    /// Run on a three-node RabbitMQ cluster of the run's own, with quorum queues, two API
    /// replicas and three consumers; kill, freeze and restart its nodes (the shared services
    /// are not touched).
    #[arg(long)]
    cluster: bool,
    /// With --cluster: only kill the node leading the queue, once.
    #[arg(long, requires = "cluster")]
    short: bool,
    /// Keep the processes' logs when the run is clean too (a failed run always keeps them).
    #[arg(long)]
    keep_logs: bool,
    #[command(flatten)]
    services: ServiceCommands,
}

/// Which run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The shared services restarted under one API and two consumers.
    Shared,
    /// A cluster of the run's own under two APIs and three consumers.
    Cluster { short: bool },
}

/// The processes' names (and their logs'): a run takes as many as its mode has.
const API_NAMES: [&str; 2] = ["api-a", "api-b"];
const CONSUMER_NAMES: [&str; 3] = ["consumer-a", "consumer-b", "consumer-c"];

/// Nodes of the cluster run's RabbitMQ cluster.
const CLUSTER_NODES: usize = 3;

impl Mode {
    fn of(args: &Args) -> Mode {
        if args.cluster {
            Mode::Cluster { short: args.short }
        } else {
            Mode::Shared
        }
    }

    fn schedule(self) -> &'static [(f64, Fault)] {
        match self {
            Mode::Shared => faults::SHARED,
            Mode::Cluster { short: false } => faults::CLUSTER,
            Mode::Cluster { short: true } => faults::CLUSTER_SHORT,
        }
    }

    fn default_seconds(self) -> u64 {
        match self {
            Mode::Shared => 60,
            Mode::Cluster { short: false } => 150,
            Mode::Cluster { short: true } => 30,
        }
    }

    /// The longest stall the run allows: a cluster fails over within it; the shared services'
    /// restarts are judged on loss and duplicates only.
    fn stall_limit(self) -> Option<Duration> {
        match self {
            Mode::Shared => None,
            Mode::Cluster { .. } => Some(CLUSTER_STALL_LIMIT),
        }
    }

    /// API processes, and consumers.
    fn replicas(self) -> (usize, usize) {
        match self {
            Mode::Shared => (1, 2),
            Mode::Cluster { .. } => (2, 3),
        }
    }
}

/// The longest a path of the cluster run may go without progress while work waits.
const CLUSTER_STALL_LIMIT: Duration = Duration::from_secs(10);

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
    let mode = Mode::of(&args);
    let run_time = Duration::from_secs(args.seconds.unwrap_or(mode.default_seconds()));
    let mut stage = Stage::set_up(&binaries()?, mode, &args.services).await?;
    let sampler = Arc::new(Sampler::new());
    let sampling = tokio::spawn(sampler.clone().run(stage.db.url().expose().to_owned()));
    let answers = stage
        .load_and_faults(sampler.epoch, run_time, mode.schedule())
        .await?;
    let expected = answers.producer_confirmed.len() + answers.demands.accepted.len();
    let drained = stage.drain(expected).await;
    sampler.finish();
    let samples = sampling.await.context("the progress samples")?;
    let expected = i64::try_from(expected).unwrap_or(i64::MAX);
    let stall = progress::longest_stall(&samples, expected, &answers.graces);
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
        absorbed: stage.logged(CONSUMER_NAMES, task_consumer::consume::DUPLICATES_LOGGED),
        republished: stage.logged(["producer"], task_producer::burst::REPUBLISHED_REPORTED),
        dead_lettered: stage.queue.ready_count(&stage.queue.dlq()).await,
        poison_sent: if answers.poisoned { POISON.len() } else { 0 },
        stall,
        stall_limit: mode.stall_limit(),
        faults: answers.faults,
        notes,
    };
    print!("{report}");
    if report.clean() && !args.keep_logs {
        let _ = std::fs::remove_dir_all(&stage.logs);
    } else {
        println!("logs kept in {}", stage.logs.display());
    }
    Ok(report.passed())
}

/// Where `make chaos` built the binaries: beside this example's directory.
fn binaries() -> anyhow::Result<PathBuf> {
    pp_lib::testkit::process::binaries_beside_this_example(
        &["pp_backend_api", "task_consumer", "task_producer"],
        "chaos",
    )
    .map_err(anyhow::Error::msg)
}

/// The services of the run (a database, a queue and a Redis prefix of its own, and for a cluster
/// run the cluster) and pp's processes over them.
struct Stage {
    db: TestDatabase,
    /// Declared before the cluster, so that it is deleted while the nodes still run.
    queue: TestQueue,
    broker: Broker,
    logs: PathBuf,
    binaries: PathBuf,
    env: Vec<(String, String)>,
    /// Each API's base URL, in the order of `apis`.
    base_urls: Vec<String>,
    apis: Vec<Process>,
    consumers: Vec<Process>,
    /// Kept for its key prefix: its keys are deleted when the run ends.
    _redis: TestRedis,
    /// The APIs' ports, reserved for the run.
    _ports: Vec<pp_lib::testkit::ports::PortReservation>,
}

/// What the faults did: whether the poison was sent, each fault in words, and their graces.
struct Struck {
    poisoned: bool,
    faults: Vec<String>,
    graces: Vec<progress::Grace>,
}

/// What the clients were told, what happened to the producer, and what the faults did.
struct Answers {
    producer_count: u64,
    producer_confirmed: HashSet<uuid::Uuid>,
    producer_exit: Option<i32>,
    demands: DemandAnswers,
    keyed: KeyedAnswers,
    poisoned: bool,
    faults: Vec<String>,
    /// When the faults' graces were (see [`Fault::grace`]).
    graces: Vec<progress::Grace>,
}

impl Stage {
    /// Creates the services (and the cluster) and starts the APIs and the consumers; returns
    /// once every API answers.
    async fn set_up(
        binaries: &Path,
        mode: Mode,
        commands: &ServiceCommands,
    ) -> anyhow::Result<Stage> {
        let cluster = match mode {
            Mode::Shared => None,
            Mode::Cluster { .. } => {
                println!("chaos: starting a RabbitMQ cluster of {CLUSTER_NODES} nodes");
                let started = tokio::task::spawn_blocking(|| TestCluster::start(CLUSTER_NODES))
                    .await
                    .map_err(|panicked| anyhow::anyhow!("the cluster did not start: {panicked}"))?;
                Some(Arc::new(started))
            }
        };
        let db = TestDatabase::create_async().await;
        let queue = match &cluster {
            None => TestQueue::create().await,
            Some(cluster) => TestQueue::create_quorum_on(cluster.nodes()).await,
        };
        let redis = TestRedis::create();
        let logs = std::env::temp_dir().join(format!("pp-chaos-{}", queue.name()));
        std::fs::create_dir_all(&logs).context("the log directory")?;
        let env = process_env(&db, &queue, &redis);
        let nodes = queue.config().nodes;
        let on = match &cluster {
            None => String::new(),
            Some(_) => format!(", RabbitMQ nodes {nodes}"),
        };
        println!(
            "chaos: on database {}, queue {}, Redis prefix {}{on}; logs in {}",
            db.name(),
            queue.name(),
            redis.prefix(),
            logs.display()
        );
        let (api_count, consumer_count) = mode.replicas();
        let Apis {
            apis,
            base_urls,
            ports,
        } = Apis::new(api_count, binaries, &env, &logs);
        let consumers = CONSUMER_NAMES[..consumer_count]
            .iter()
            .map(|name| Process::new(name, binaries.join("task_consumer"), &["run"], &env, &logs))
            .collect();
        let broker = match cluster {
            None => Broker::Shared(Services::new(commands)),
            Some(cluster) => Broker::Cluster {
                cluster,
                queue: queue.name().to_owned(),
            },
        };
        let mut stage = Stage {
            db,
            queue,
            broker,
            logs: logs.clone(),
            binaries: binaries.to_owned(),
            env,
            base_urls,
            apis,
            consumers,
            _redis: redis,
            _ports: ports,
        };
        for process in stage.apis.iter_mut().chain(stage.consumers.iter_mut()) {
            process.start()?;
        }
        for index in 0..stage.apis.len() {
            stage.api_answers(index).await?;
        }
        Ok(stage)
    }

    /// Waits until API `index` answers `/healthz`.
    async fn api_answers(&self, index: usize) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.base_urls[index]);
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
    /// The load runs for 85 % of `run_time`, and on until the last fault is over.
    async fn load_and_faults(
        &mut self,
        started: Instant,
        run_time: Duration,
        schedule: &[(f64, Fault)],
    ) -> anyhow::Result<Answers> {
        let producer_count = (PRODUCER_RATE * run_time.as_secs_f64() * 0.8).round() as u64;
        let ids_file = self.logs.join("producer.ids");
        let mut producer = self.producer(producer_count, &ids_file);
        producer.start()?;
        let end = LoadEnd::default();
        let demands = tokio::spawn(load::send_demands(
            self.base_urls.clone(),
            4,
            40.0,
            end.clone(),
        ));
        let keyed = tokio::spawn(load::create_keyed(
            self.base_urls.clone(),
            2,
            20.0,
            end.clone(),
            DRAIN_LIMIT / 2,
        ));
        let struck = self.strike_on_schedule(started, run_time, schedule).await;
        tokio::time::sleep_until(started + run_time.mul_f64(0.85)).await;
        end.end();
        let Struck {
            poisoned,
            faults,
            graces,
        } = struck?;
        let demands = demands.await.context("the demand clients")?;
        let keyed = keyed.await.context("the keyed clients")?;
        let producer_exit = producer.wait(DRAIN_LIMIT).await;
        Ok(Answers {
            producer_count,
            producer_confirmed: read_ids(&ids_file)?,
            producer_exit,
            demands,
            keyed,
            poisoned,
            faults,
            graces,
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

    /// Each fault of the schedule at its time (or at once, when the one before took longer);
    /// poison is published once the broker is back from its first fault. Whether the poison was
    /// sent, and what each fault did.
    async fn strike_on_schedule(
        &mut self,
        started: Instant,
        run_time: Duration,
        schedule: &[(f64, Fault)],
    ) -> anyhow::Result<Struck> {
        let mut poisoned = false;
        let mut done = Vec::new();
        let mut graces = Vec::new();
        for &(at, fault) in schedule {
            tokio::time::sleep_until(started + run_time.mul_f64(at)).await;
            let struck_at = started.elapsed();
            let at = struck_at.as_secs_f64();
            if !fault.grace().is_zero() {
                graces.push((struck_at, struck_at + fault.grace()));
            }
            println!("chaos: {at:5.1} s  {}", fault.describe());
            let mut targets = faults::Targets {
                apis: &mut self.apis,
                consumers: &mut self.consumers,
                broker: &self.broker,
            };
            let what = targets.strike(fault).await?;
            println!("chaos: {:5.1} s  … {what}", started.elapsed().as_secs_f64());
            done.push(format!("at {at:.0} s {what}"));
            match fault {
                Fault::KillApi => self.api_answers(0).await?,
                Fault::RestartRabbitMq | Fault::KillLeader if !poisoned => {
                    for body in POISON {
                        let properties = pp_lib::amqp::demand_properties(uuid::Uuid::new_v4());
                        self.queue.publish_raw(body, properties).await;
                    }
                    poisoned = true;
                }
                _ => {}
            }
        }
        Ok(Struck {
            poisoned,
            faults: done,
            graces,
        })
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

    /// The sum of the counts the logs of the processes `names` give before `what`.
    fn logged<const N: usize>(&self, names: [&str; N], what: &str) -> u64 {
        names
            .iter()
            .filter_map(|name| std::fs::read_to_string(self.logs.join(format!("{name}.log"))).ok())
            .map(|log| sum_logged(&log, what))
            .sum()
    }

    /// Stops pp's processes with SIGTERM; a note for each that did not exit 0.
    async fn stop(&mut self) -> Vec<String> {
        let mut notes = Vec::new();
        for process in self.apis.iter_mut().chain(self.consumers.iter_mut()) {
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

/// The environment every process of the run shares: its database, queue, Redis prefix, and
/// short intervals.
fn process_env(db: &TestDatabase, queue: &TestQueue, redis: &TestRedis) -> Vec<(String, String)> {
    let queue_type = match queue.topology().queue_type() {
        QueueType::Classic => "classic",
        QueueType::Quorum => "quorum",
    };
    let nodes = queue.config().nodes;
    let amqp_urls: Vec<&str> = nodes.iter().map(|url| url.expose()).collect();
    [
        ("DATABASE_URL", db.url().expose().to_owned()),
        ("AMQP_URL", amqp_urls.join(",")),
        ("PP_QUEUE", queue.name().to_owned()),
        ("PP_QUEUE_TYPE", queue_type.to_owned()),
        ("REDIS_URL", redis.url().expose().to_owned()),
        ("PP_REDIS_PREFIX", redis.prefix().to_owned()),
        ("PP_OUTBOX_INTERVAL", "200ms".to_owned()),
        ("PP_CONSUMER_METRICS_ADDR", "off".to_owned()),
        ("PP_SWEEP_EVERY", "1s".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// The run's API processes, each on a port reserved for the run (an API is restarted on the
/// same address), and their base URLs.
struct Apis {
    apis: Vec<Process>,
    base_urls: Vec<String>,
    ports: Vec<pp_lib::testkit::ports::PortReservation>,
}

impl Apis {
    fn new(count: usize, binaries: &Path, env: &[(String, String)], logs: &Path) -> Apis {
        let mut made = Apis {
            apis: Vec::new(),
            base_urls: Vec::new(),
            ports: Vec::new(),
        };
        for name in &API_NAMES[..count] {
            let reservation = pp_lib::testkit::ports::reserve_port();
            let port = reservation.port();
            made.ports.push(reservation);
            let mut api_env = env.to_vec();
            api_env.push(("PP_HTTP_ADDR".to_owned(), format!("127.0.0.1:{port}")));
            made.apis.push(Process::new(
                name,
                binaries.join("pp_backend_api"),
                &[],
                &api_env,
                logs,
            ));
            made.base_urls.push(format!("http://127.0.0.1:{port}"));
        }
        made
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
