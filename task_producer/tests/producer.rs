//! The producer binary against the real RabbitMQ, on a queue of its own per test: `burst`,
//! `run` (and no command, which is `run`), bad flags.

use std::collections::HashSet;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pp_lib::config::SecretUrl;
use pp_lib::testkit::process::{error_lines, wait_exit_with_stderr};
use pp_lib::testkit::{
    FaultyBroker, KillOnDrop, TcpProxy, TestQueue, at_least, eventually, socket_addr_of, terminate,
    via, wait_exit,
};
use uuid::Uuid;

fn producer(url: &SecretUrl, queue: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_task_producer"));
    command
        .env("AMQP_URL", url.expose())
        .env("PP_QUEUE", queue)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("the producer runs")
}

#[tokio::test]
async fn a_burst_publishes_every_demand_persistent_with_its_own_message_id() {
    let queue = TestQueue::create().await;
    let ids_file = std::env::temp_dir().join(format!("{}.ids", queue.name()));
    let mut command = producer(queue.url(), queue.name());
    command.args(["burst", "--count", "50", "--add-up-to", "7", "--ids-file"]);
    command.arg(&ids_file);
    let out = output(command);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("confirmed 50 of 50 demands"), "{stdout}");
    assert_eq!(queue.ready_count(queue.name()).await, 50);

    let mut ids = HashSet::new();
    for message in queue.take_all(queue.name()).await {
        assert_eq!(message.body, br#"{"add_up_to":7,"done":false}"#);
        let properties = &message.properties;
        assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            properties.content_type().as_ref().map(|t| t.as_str()),
            Some("application/json")
        );
        assert!(properties.timestamp().is_some());
        ids.insert(message.id());
    }
    assert_eq!(ids.len(), 50, "every message has its own id");
    let written = std::fs::read_to_string(&ids_file).expect("the ids file");
    let _ = std::fs::remove_file(&ids_file);
    let written: HashSet<Uuid> = written
        .lines()
        .map(|line| Uuid::parse_str(line).expect("an id a line"))
        .collect();
    assert_eq!(written, ids, "the ids file lists every confirmed demand");
}

#[test]
fn a_burst_whose_ids_file_cannot_be_written_fails_before_publishing() {
    let mut command = producer(&pp_lib::testkit::amqp_url(), "pp_test_never_declared");
    command.args([
        "burst",
        "--count",
        "5",
        "--ids-file",
        "/nonexistent-directory/ids",
    ]);
    let out = output(command);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot write --ids-file /nonexistent-directory/ids"),
        "{stderr}"
    );
}

#[test]
fn a_burst_exits_3_with_one_line_when_the_broker_is_unreachable() {
    let closed = pp_lib::testkit::ports::closed_port();
    let port = closed.port();
    let url: SecretUrl = format!("amqp://guest:sekrit@127.0.0.1:{port}/%2f")
        .parse()
        .expect("a URL");
    let mut command = producer(&url, "pp_test_unreachable");
    command.args(["burst", "--count", "5", "--patience", "1s"]);
    let started = Instant::now();
    let out = output(command);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    pp_lib::testkit::assert_prompt(started.elapsed(), Duration::from_secs(1), "the patience");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("task_producer: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("sekrit"), "the password leaked: {stderr}");
}

#[test]
fn bad_usage_exits_2() {
    let out = output({
        let mut command = Command::new(env!("CARGO_BIN_EXE_task_producer"));
        command.args(["burst", "--count", "many"]);
        command
    });
    assert_eq!(out.status.code(), Some(2));
}

async fn wait_for_messages(queue: &TestQueue, least: u32) -> u32 {
    eventually(&format!("{least} messages in the queue"), async || {
        at_least(queue.ready_count(queue.name()).await, least)
    })
    .await
}

#[tokio::test]
async fn run_publishes_on_its_schedule_rides_out_an_outage_and_stops_on_sigterm() {
    let queue = TestQueue::create().await;
    let proxy = TcpProxy::start(socket_addr_of(queue.url(), 5672));
    let mut command = producer(&via(queue.url(), proxy.addr()), queue.name());
    command
        .args(["run", "--every", "100ms", "--per-tick", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(command.spawn().expect("the producer starts"));
    wait_for_messages(&queue, 6).await;
    proxy.cut();
    // It tried the broker again, more than once, while it was away.
    let tried = proxy.attempts();
    eventually("two attempts to reconnect", async || {
        at_least(proxy.attempts(), tried + 2)
    })
    .await;
    let during = queue.ready_count(queue.name()).await;
    proxy.restore();
    // It comes back by itself and goes on publishing.
    wait_for_messages(&queue, during + 6).await;
    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(
        &mut child.stderr.take().expect("stderr is piped"),
        &mut stderr,
    )
    .expect("its stderr");
    let outage_lines = stderr
        .lines()
        .filter(|line| line.contains("RabbitMQ"))
        .count();
    assert_eq!(
        outage_lines, 1,
        "one warning per outage, not one per attempt:\n{stderr}"
    );
    // Every message is a well-formed demand (nothing half-published).
    for message in queue.take_all(queue.name()).await {
        pp_lib::demand::WorkDemand::from_json(&message.body).expect("a valid demand");
    }
}

#[tokio::test]
async fn a_connection_that_nacks_every_confirm_is_left_for_a_new_one_and_the_burst_completes() {
    let queue = TestQueue::create().await;
    let broker = FaultyBroker::start(socket_addr_of(queue.url(), 5672));
    let mut command = producer(&via(queue.url(), broker.addr()), queue.name());
    command
        .args(["burst", "--count", "400", "--rate", "200"])
        .stdout(Stdio::piped());
    let mut child = KillOnDrop(command.spawn().expect("the producer starts"));
    wait_for_messages(&queue, 20).await;

    // From now on the connection it publishes on nacks every confirm, while the broker still
    // enqueues each message: what RabbitMQ 3.10 does to a channel opened while a quorum queue
    // elects its leader. Publishing again on it would never end.
    broker.nack_on_open_connections();
    let status = wait_exit(&mut child, Duration::from_secs(30)).await;

    let mut stdout = String::new();
    std::io::Read::read_to_string(
        &mut child.stdout.take().expect("stdout is piped"),
        &mut stdout,
    )
    .expect("its stdout");
    assert!(
        status.success(),
        "the burst completes, got {status}: {stdout}"
    );
    assert!(stdout.contains("confirmed 400 of 400 demands"), "{stdout}");
    assert!(broker.connections() >= 2, "it moved to a new connection");
    let ids: HashSet<Uuid> = queue
        .take_all(queue.name())
        .await
        .iter()
        .map(pp_lib::testkit::Taken::id)
        .collect();
    assert_eq!(ids.len(), 400, "every demand arrived (some twice)");
}

#[tokio::test]
async fn without_a_command_the_producer_runs_its_schedule() {
    let queue = TestQueue::create().await;
    let mut command = producer(queue.url(), queue.name());
    command
        .env("PP_PRODUCER_EVERY", "100ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = KillOnDrop(command.spawn().expect("the producer starts"));

    wait_for_messages(&queue, 3).await;
    terminate(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10)).await;

    assert!(status.success(), "SIGTERM exits 0, got {status}");
}

/// No setting makes the producer panic or hang: every flag that takes a number or a duration,
/// given every extreme value, is refused by clap with a one-line error, or taken by the real
/// binary, which runs and stops on SIGTERM without a panic (a burst paced at one a day too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flag_value_makes_the_producer_panic() {
    use clap::CommandFactory;
    use pp_lib::testkit::flags::{accepted, probes, run_accepted};
    let queue = TestQueue::create().await;
    let command = task_producer::settings::Cli::command();
    let mut runs = accepted(&command, &probes(&command, &["task_producer", "run"]));
    runs.extend(accepted(
        &command,
        &probes(&command, &["task_producer", "burst", "--count", "3"]),
    ));
    assert!(
        !runs
            .iter()
            .any(|probe| probe.flag == "rate" && probe.value.starts_with("1e-30")),
        "a rate below one a day is refused"
    );
    let url = queue.url().expose().to_owned();
    let name = queue.name().to_owned();
    tokio::task::spawn_blocking(move || {
        run_accepted(
            std::path::Path::new(env!("CARGO_BIN_EXE_task_producer")),
            &[
                ("AMQP_URL", url.as_str()),
                ("PP_QUEUE", name.as_str()),
                ("RUST_LOG", "warn"),
            ],
            &runs,
            8,
            Duration::from_secs(1),
            Duration::from_secs(15),
        );
    })
    .await
    .expect("every run was checked");
}

#[tokio::test]
async fn a_burst_passes_over_a_node_that_takes_connections_but_never_answers() {
    let queue = TestQueue::create().await;
    // The kernel completes the connection; nothing ever speaks AMQP on it (a frozen node).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let frozen = listener.local_addr().expect("its address");
    let nodes = format!("amqp://guest:guest@{frozen}/%2f,{}", queue.url().expose());
    let mut command = Command::new(env!("CARGO_BIN_EXE_task_producer"));
    command
        .env("AMQP_URL", nodes)
        .env("PP_QUEUE", queue.name())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        // The default patience: a round of the list must fit well inside it.
        .args(["burst", "--count", "20"]);

    let out = output(command);

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("confirmed 20 of 20 demands"), "{stdout}");
    drop(listener);
}

#[tokio::test]
async fn a_queue_of_another_type_stops_burst_and_run_with_one_line_and_the_way_out() {
    // The test's queue is classic; the producer is told it is a quorum queue.
    let queue = TestQueue::create().await;
    for args in [
        &["burst", "--count", "5"][..],
        &["run", "--every", "10ms"][..],
    ] {
        let mut command = producer(queue.url(), queue.name());
        command
            .env("PP_QUEUE_TYPE", "quorum")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = KillOnDrop(command.spawn().expect("the producer starts"));

        let (status, stderr) = wait_exit_with_stderr(&mut child, Duration::from_secs(30)).await;

        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        let errors = error_lines(&stderr, "task_producer");
        assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
        for named in [queue.name(), "another type", "PP_QUEUE"] {
            assert!(
                errors[0].contains(named),
                "{args:?}: {named} in {}",
                errors[0]
            );
        }
    }
}
