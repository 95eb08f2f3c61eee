//! The real binary: killed with SIGKILL mid-stream, then restarted; stopped with SIGTERM; run
//! without a command (it consumes, as `run` does); and `sweep --all-pending`.

use std::process::{Command, Stdio};
use std::time::Duration;

use pp_lib::testkit::process::{error_lines, wait_exit_with_stderr};
use pp_lib::testkit::{KillOnDrop, at_least, eventually, terminate, wait_exit};
use pp_storage::testkit::{DONE_API_WORKS, DONE_DEMANDS, PENDING_API_WORKS};
use task_consumer::testkit::{TestServices, demands};

use crate::sweeper::insert_api_works;

fn consumer_command(services: &TestServices) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_task_consumer"));
    command
        .env("DATABASE_URL", services.db.url().expose())
        .env("AMQP_URL", services.queue.url().expose())
        .env("PP_QUEUE", services.queue.name())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    command
}

fn spawn_consumer(services: &TestServices) -> KillOnDrop {
    let child = consumer_command(services)
        .args([
            "run",
            "--metrics-addr",
            "off",
            "--batch-size",
            "16",
            "--workers",
            "2",
            "--prefetch",
            "64",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the consumer binary starts");
    KillOnDrop(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_mid_stream_and_restarted_records_every_demand_once() {
    let services = TestServices::create().await;
    let ids = services.queue.publish_demands(&demands(3_000)).await;
    let mut first = spawn_consumer(&services);
    // Kill it once it is well into the stream.
    eventually("the first consumer to record 300", async || {
        at_least(services.db.count(DONE_DEMANDS), 300)
    })
    .await;
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    let after_kill = services.db.count(DONE_DEMANDS);
    assert!(
        after_kill < 3_000,
        "killed before the end ({after_kill} done)"
    );
    let mut second = spawn_consumer(&services);
    services.db.eventually_count(DONE_DEMANDS, 3_000).await;
    terminate(&second);
    let status = wait_exit(&mut second, Duration::from_secs(20)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    services.db.assert_recorded_once(&ids);
    assert_eq!(services.queue.ready_count(services.queue.name()).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_and_acks_in_flight_work_and_exits_0() {
    let services = TestServices::create().await;
    let ids = services.queue.publish_demands(&demands(2_000)).await;
    let mut consumer = spawn_consumer(&services);
    eventually("the consumer to record 200", async || {
        at_least(services.db.count(DONE_DEMANDS), 200)
    })
    .await;
    terminate(&consumer);
    let status = wait_exit(&mut consumer, Duration::from_secs(20)).await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");
    // Everything recorded was acked, everything else is back in the queue: nothing is both.
    let done = services.db.count(DONE_DEMANDS);
    let ready = i64::from(services.queue.ready_count(services.queue.name()).await);
    assert_eq!(done + ready, 2_000, "{done} recorded + {ready} waiting");
    // A new consumer finishes the rest, exactly once.
    let mut second = spawn_consumer(&services);
    services.db.eventually_count(DONE_DEMANDS, 2_000).await;
    terminate(&second);
    assert!(
        wait_exit(&mut second, Duration::from_secs(20))
            .await
            .success()
    );
    services.db.assert_recorded_once(&ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_command_the_binary_consumes_as_run_does() {
    let services = TestServices::create().await;
    let ids = services.queue.publish_demands(&demands(50)).await;
    let mut consumer = KillOnDrop(
        consumer_command(&services)
            .env("PP_CONSUMER_METRICS_ADDR", "off")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the consumer binary starts"),
    );

    services.db.eventually_count(DONE_DEMANDS, 50).await;
    terminate(&consumer);
    let status = wait_exit(&mut consumer, Duration::from_secs(20)).await;

    assert!(status.success(), "SIGTERM exits 0, got {status}");
    services.db.assert_recorded_once(&ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_all_pending_finishes_works_of_any_age_and_says_how_many() {
    let services = TestServices::create().await;
    insert_api_works(&services.db, 25);
    {
        use diesel::prelude::*;
        let mut conn = services.db.connect();
        diesel::sql_query(
            "update works set created_on = now() - interval '30 days' \
             where id in (select id from works order by id limit 20)",
        )
        .execute(&mut conn)
        .expect("age twenty works");
    }

    let windowed = consumer_command(&services)
        .args(["sweep", "--sweep-batch", "7"])
        .output()
        .expect("task_consumer sweep runs");
    let all = consumer_command(&services)
        .args(["sweep", "--all-pending", "--sweep-batch", "7"])
        .output()
        .expect("task_consumer sweep --all-pending runs");

    let windowed_out = String::from_utf8_lossy(&windowed.stdout);
    assert!(windowed.status.success(), "{windowed:?}");
    assert!(
        windowed_out
            .starts_with("swept 5 pending API-created work(s) within the last 6h in 1 batch(es)"),
        "{windowed_out}"
    );
    assert!(
        windowed_out.contains("; 20 older left pending"),
        "{windowed_out}"
    );
    let all_out = String::from_utf8_lossy(&all.stdout);
    assert!(all.status.success(), "{all:?}");
    assert!(
        all_out.starts_with("swept 20 pending API-created work(s) of any age in 3 batch(es)"),
        "{all_out}"
    );
    assert_eq!(services.db.count(PENDING_API_WORKS), 0);
    assert_eq!(services.db.count(DONE_API_WORKS), 25);
    services.db.assert_no_wrong_works();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_exits_0_run_after_run_without_crashing_at_exit() {
    let services = TestServices::create().await;
    insert_api_works(&services.db, 3);

    // A spare connection still being opened in the background when the process exits crashed
    // it (SIGSEGV in OpenSSL) about one run in eight.
    let codes: Vec<Option<i32>> = (0..25)
        .map(|_| {
            consumer_command(&services)
                .args(["sweep", "--all-pending"])
                .output()
                .expect("task_consumer sweep runs")
                .status
                .code()
        })
        .collect();

    assert!(codes.iter().all(|code| *code == Some(0)), "{codes:?}");
    assert_eq!(services.db.count(PENDING_API_WORKS), 0);
}

#[tokio::test]
async fn a_queue_of_another_type_stops_the_consumer_with_one_line_and_the_way_out() {
    let services = TestServices::create().await;
    // The test's queue is classic; this consumer is told it is a quorum queue.
    let mut child = KillOnDrop(
        consumer_command(&services)
            .env("PP_QUEUE_TYPE", "quorum")
            .args(["run", "--metrics-addr", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the consumer binary starts"),
    );

    let (status, stderr) = wait_exit_with_stderr(&mut child, Duration::from_secs(30)).await;

    assert_eq!(status.code(), Some(1), "{stderr}");
    let errors = error_lines(&stderr, "task_consumer");
    assert_eq!(errors.len(), 1, "{stderr}");
    for named in [services.queue.name(), "another type", "PP_QUEUE"] {
        assert!(errors[0].contains(named), "{named} in {}", errors[0]);
    }
    assert!(!stderr.contains("reconnecting"), "no outage: {stderr}");
}
