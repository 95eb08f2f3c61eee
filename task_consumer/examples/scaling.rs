//! `make bench-queue`'s scaling table: pp's publish and consume rates beside the broker's own
//! ceiling for the same work, on a three-node RabbitMQ cluster of the run's own, for a classic
//! and a quorum queue and 1, 2 and 4 consumer processes.
//!
//! For each queue type and each number of consumers K, on fresh queues and a fresh database:
//! - broker ceiling, publish: one connection publishes `--demands` demand messages with
//!   confirms, as many unconfirmed at once as pp's producer allows (its window), no database;
//! - pp publish: `task_producer burst --count N`, every demand confirmed;
//! - broker ceiling, consume: K connections (one per node in turn) take them with pp's prefetch
//!   and acknowledge each, as pp's consumer does, no database;
//! - pp consume: K `task_consumer run` processes (each starting at another node of `AMQP_URL`)
//!   take the producer's demands until all are done works in the database.
//!
//! Every rate is from the start of the step (connections included) to its last message.
//! Everything is on loopback, bounded in count and time, and removed afterwards (the cluster,
//! queues and databases are the testkits').

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use pp_lib::amqp::publish::DEFAULT_WINDOW;
use pp_lib::amqp::{Outgoing, demand_properties};
use pp_lib::config::{AmqpNodes, QueueType};
use pp_lib::demand::WorkDemand;
use pp_lib::testkit::{TestCluster, TestQueue};
use pp_storage::testkit::{DONE_DEMANDS, TestDatabase};
use tokio::time::Instant;

/// Scaling of pp's queue pipeline on a cluster, beside the broker's own ceiling.
#[derive(Debug, Parser)]
#[command(name = "scaling")]
struct Args {
    /// Demands per step (1,000 to 1,000,000).
    #[arg(long, env = "PP_BENCH_DEMANDS", default_value_t = 20_000,
          value_parser = clap::value_parser!(u64).range(1_000..=1_000_000))]
    demands: u64,
    /// Numbers of consumer processes to measure, comma-separated (each 1 to 16).
    #[arg(long, value_delimiter = ',', default_values_t = [1, 2, 4],
          value_parser = clap::value_parser!(u16).range(1..=16))]
    consumers: Vec<u16>,
}

/// The longest one step may take.
const STEP_LIMIT: Duration = Duration::from_secs(300);

/// pp's consumer's default prefetch (`PP_CONSUMER_PREFETCH`), used by the ceiling's consumers.
const PREFETCH: u16 = 512;

/// What one step measured.
#[derive(Debug, Clone, Copy)]
struct Row {
    queue_type: QueueType,
    consumers: u16,
    broker_publish: f64,
    pp_publish: f64,
    broker_consume: f64,
    pp_consume: f64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    pp_lib::logging::init();
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("scaling: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let binaries = binaries()?;
    println!("scaling: starting a RabbitMQ cluster of 3 nodes");
    let cluster = TestCluster::start_async(3).await;
    let nodes = cluster.nodes();
    let mut rows = Vec::new();
    for queue_type in [QueueType::Classic, QueueType::Quorum] {
        for &consumers in &args.consumers {
            let row = measure(&binaries, &nodes, queue_type, consumers, args.demands).await?;
            println!(
                "scaling: {} queue, {consumers} consumer(s): publish {:.0}/s (broker {:.0}/s), consume {:.0}/s (broker {:.0}/s)",
                type_name(queue_type),
                row.pp_publish,
                row.broker_publish,
                row.pp_consume,
                row.broker_consume
            );
            rows.push(row);
        }
    }
    print_table(&rows, args.demands);
    Ok(())
}

/// One step: the ceiling, then pp, on queues and a database of its own.
async fn measure(
    binaries: &Path,
    nodes: &AmqpNodes,
    queue_type: QueueType,
    consumers: u16,
    demands: u64,
) -> anyhow::Result<Row> {
    let ceiling = TestQueue::create_on_nodes(nodes.clone(), queue_type).await;
    let broker_publish =
        within_step("the broker's publish", publish_ceiling(&ceiling, demands)).await??;
    let broker_consume = within_step(
        "the broker's consume",
        consume_ceiling(&ceiling, consumers, demands),
    )
    .await??;
    drop(ceiling);

    let queue = TestQueue::create_on_nodes(nodes.clone(), queue_type).await;
    let db = TestDatabase::create_async().await;
    let env = Env::of(&queue, &db, queue_type);
    let pp_publish = within_step("pp's publish", pp_publish(binaries, &env, demands)).await??;
    let pp_consume = within_step(
        "pp's consume",
        pp_consume(binaries, &env, &db, consumers, demands),
    )
    .await??;
    Ok(Row {
        queue_type,
        consumers,
        broker_publish,
        pp_publish,
        broker_consume,
        pp_consume,
    })
}

async fn within_step<T>(what: &str, step: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(STEP_LIMIT, step)
        .await
        .with_context(|| format!("{what} did not finish within {STEP_LIMIT:?}"))
}

/// Messages a second: `count` over the time since `started`.
fn rate(count: u64, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// Publishes `count` demands to `queue` through its first node with confirms, up to pp's
/// window unconfirmed; the rate.
async fn publish_ceiling(queue: &TestQueue, count: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let connection = Connection::connect(queue.url().expose(), ConnectionProperties::default())
        .await
        .context("connecting for the ceiling's publish")?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut in_flight = VecDeque::new();
    for _ in 0..count {
        if in_flight.len() >= DEFAULT_WINDOW
            && let Some(confirm) = in_flight.pop_front()
        {
            confirmed(confirm).await?;
        }
        let message = Outgoing::demand(&WorkDemand::random());
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.name().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                demand_properties(message.id),
            )
            .await?;
        in_flight.push_back(confirm);
    }
    for confirm in in_flight {
        confirmed(confirm).await?;
    }
    let rate = rate(count, started);
    let _ = connection.close(200, "published".into()).await;
    Ok(rate)
}

async fn confirmed(confirm: lapin::PublisherConfirm) -> anyhow::Result<()> {
    match confirm.await? {
        lapin::Confirmation::Ack(None) => Ok(()),
        other => bail!("the broker did not take a message: {other:?}"),
    }
}

/// Takes `count` messages from `queue` over `consumers` connections, one per node in turn, with
/// pp's prefetch, acknowledging each; the rate.
async fn consume_ceiling(queue: &TestQueue, consumers: u16, count: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    let taken = Arc::new(AtomicU64::new(0));
    let urls = node_urls(queue);
    let mut tasks = Vec::new();
    for index in 0..usize::from(consumers) {
        let url = urls[index % urls.len()].clone();
        let (name, taken) = (queue.name().to_owned(), taken.clone());
        tasks.push(tokio::spawn(async move {
            take(&url, &name, index, &taken, count).await
        }));
    }
    for task in tasks {
        task.await.context("a ceiling consumer")??;
    }
    Ok(rate(count, started))
}

/// One ceiling consumer: takes and acknowledges until `taken` reaches `count` between them all.
async fn take(
    url: &str,
    queue: &str,
    index: usize,
    taken: &AtomicU64,
    count: u64,
) -> anyhow::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("connecting for the ceiling's consume")?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut deliveries = channel
        .basic_consume(
            queue.into(),
            format!("ceiling-{index}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    while taken.load(Ordering::Relaxed) < count {
        let next = tokio::time::timeout(Duration::from_millis(200), deliveries.next()).await;
        let Ok(next) = next else { continue };
        let delivery = next.context("the ceiling's consumer was cancelled")??;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        taken.fetch_add(1, Ordering::Relaxed);
    }
    let _ = connection.close(200, "consumed".into()).await;
    Ok(())
}

/// The environment pp's processes run in for one step.
struct Env {
    vars: Vec<(&'static str, String)>,
    /// Each node's URL, in order, to start each consumer at another.
    urls: Vec<String>,
}

impl Env {
    fn of(queue: &TestQueue, db: &TestDatabase, queue_type: QueueType) -> Env {
        let urls = node_urls(queue);
        Env {
            vars: vec![
                ("DATABASE_URL", db.url().expose().to_owned()),
                ("PP_QUEUE", queue.name().to_owned()),
                ("PP_QUEUE_TYPE", type_name(queue_type).to_owned()),
                ("PP_CONSUMER_METRICS_ADDR", "off".to_owned()),
                ("PP_SWEEP_EVERY", "0".to_owned()),
                ("RUST_LOG", "warn".to_owned()),
            ],
            urls,
        }
    }

    /// A command for `binary` with this environment, its `AMQP_URL` starting at node `first`.
    fn command(&self, binary: PathBuf, first: usize) -> tokio::process::Command {
        let mut urls = self.urls.clone();
        let turn = first % urls.len().max(1);
        urls.rotate_left(turn);
        let mut command = tokio::process::Command::new(binary);
        command
            .envs(self.vars.iter().map(|(key, value)| (*key, value)))
            .env("AMQP_URL", urls.join(","))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }
}

/// `task_producer burst --count N`; its rate (what it prints).
async fn pp_publish(binaries: &Path, env: &Env, count: u64) -> anyhow::Result<f64> {
    let output = env
        .command(binaries.join("task_producer"), 0)
        .args(["burst", "--count", &count.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running task_producer")?;
    let printed = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("task_producer burst failed ({}): {printed}", output.status);
    }
    let line = printed
        .lines()
        .find(|line| line.starts_with(&format!("confirmed {count} of {count}")))
        .with_context(|| format!("task_producer did not confirm every demand: {printed}"))?;
    line.split_once('(')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|rate| rate.parse().ok())
        .with_context(|| format!("no rate in {line:?}"))
}

/// `consumers` `task_consumer run` processes until `count` demands are done works; the rate.
async fn pp_consume(
    binaries: &Path,
    env: &Env,
    db: &TestDatabase,
    consumers: u16,
    count: u64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let mut processes = Vec::new();
    for index in 0..usize::from(consumers) {
        let mut command = env.command(binaries.join("task_consumer"), index);
        command
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        processes.push(command.spawn().context("starting task_consumer")?);
    }
    let expected = i64::try_from(count).unwrap_or(i64::MAX);
    loop {
        let url = db.url().clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut conn = pp_lib::db::pool::establish(&url, Duration::from_secs(5)).ok()?;
            Some(pp_storage::testkit::count(&mut conn, DONE_DEMANDS))
        })
        .await
        .ok()
        .flatten();
        if done.is_some_and(|done| done >= expected) {
            break;
        }
        for process in &mut processes {
            if let Some(status) = process.try_wait()? {
                bail!("a consumer exited early ({status})");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = rate(count, started);
    for mut process in processes {
        if let Some(pid) = process.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), process.wait()).await;
    }
    Ok(rate)
}

/// Each node's URL `queue` is reached through, in order.
fn node_urls(queue: &TestQueue) -> Vec<String> {
    queue
        .config()
        .nodes
        .iter()
        .map(|url| url.expose().to_owned())
        .collect()
}

fn type_name(queue_type: QueueType) -> &'static str {
    match queue_type {
        QueueType::Classic => "classic",
        QueueType::Quorum => "quorum",
    }
}

fn print_table(rows: &[Row], demands: u64) {
    println!("\n{demands} demands a step, on a three-node cluster; rates in messages a second\n");
    println!(
        "{:<8} {:>9} {:>14} {:>11} {:>6} {:>14} {:>11} {:>6}",
        "queue",
        "consumers",
        "broker publish",
        "pp publish",
        "ratio",
        "broker consume",
        "pp consume",
        "ratio"
    );
    for row in rows {
        println!(
            "{:<8} {:>9} {:>14.0} {:>11.0} {:>6.2} {:>14.0} {:>11.0} {:>6.2}",
            type_name(row.queue_type),
            row.consumers,
            row.broker_publish,
            row.pp_publish,
            row.pp_publish / row.broker_publish,
            row.broker_consume,
            row.pp_consume,
            row.pp_consume / row.broker_consume
        );
    }
}

/// Where `make bench-queue` built the binaries: beside this example's directory.
fn binaries() -> anyhow::Result<PathBuf> {
    pp_lib::testkit::process::binaries_beside_this_example(
        &["task_consumer", "task_producer"],
        "bench-queue",
    )
    .map_err(anyhow::Error::msg)
}
