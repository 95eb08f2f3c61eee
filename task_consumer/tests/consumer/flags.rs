//! No setting makes the consumer panic or hang: every flag that takes a number or a duration,
//! given every extreme value, is refused by clap with a one-line error, or taken by the real
//! binary, which consumes (or sweeps) and stops on SIGTERM without a panic.

use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use pp_lib::testkit::flags::{accepted, probes, run_accepted};
use task_consumer::settings::Cli;
use task_consumer::testkit::TestServices;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flag_value_makes_the_consumer_panic() {
    let services = TestServices::create().await;
    let (db, queue) = (&services.db, &services.queue);
    let command = Cli::command();
    let mut runs = accepted(&command, &probes(&command, &["task_consumer", "run"]));
    runs.extend(accepted(
        &command,
        &probes(&command, &["task_consumer", "sweep"]),
    ));
    assert!(
        !runs
            .iter()
            .any(|probe| probe.flag == "prefetch" && probe.value == "0"),
        "a prefetch of 0 (no limit at all) is refused"
    );
    let database_url = db.url().expose().to_owned();
    let amqp_url = queue.url().expose().to_owned();
    let queue_name = queue.name().to_owned();
    tokio::task::spawn_blocking(move || {
        run_accepted(
            Path::new(env!("CARGO_BIN_EXE_task_consumer")),
            &[
                ("DATABASE_URL", database_url.as_str()),
                ("AMQP_URL", amqp_url.as_str()),
                ("PP_QUEUE", queue_name.as_str()),
                ("PP_CONSUMER_METRICS_ADDR", "off"),
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
