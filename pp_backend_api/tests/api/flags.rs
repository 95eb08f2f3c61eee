//! No setting makes the API panic: every flag that takes a value, given every extreme value,
//! is either refused by clap with a one-line error or run by the real binary, which starts,
//! serves and stops on SIGTERM without a panic.

use std::path::Path;
use std::time::Duration;

use clap::CommandFactory;
use pp_backend_api::settings::Settings;
use pp_lib::testkit::flags::{accepted, probes, run_accepted};
use pp_lib::testkit::{TestQueue, TestRedis};
use pp_storage::testkit::TestDatabase;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_flag_value_makes_the_api_panic() {
    let db = TestDatabase::create_async().await;
    let queue = TestQueue::create().await;
    let redis = TestRedis::create();
    let command = Settings::command();
    let accepted = accepted(&command, &probes(&command, &["pp_backend_api"]));
    assert!(
        accepted.iter().any(|probe| probe.value == "36500d"),
        "the largest duration is taken somewhere"
    );
    let database_url = db.url().expose().to_owned();
    let amqp_url = queue.url().expose().to_owned();
    let queue_name = queue.name().to_owned();
    let redis_url = redis.url().expose().to_owned();
    let redis_prefix = redis.config().prefix;
    tokio::task::spawn_blocking(move || {
        run_accepted(
            Path::new(env!("CARGO_BIN_EXE_pp_backend_api")),
            &[
                ("DATABASE_URL", database_url.as_str()),
                ("AMQP_URL", amqp_url.as_str()),
                ("PP_QUEUE", queue_name.as_str()),
                ("REDIS_URL", redis_url.as_str()),
                ("PP_REDIS_PREFIX", redis_prefix.as_str()),
                ("PP_HTTP_ADDR", "127.0.0.1:0"),
                ("RUST_LOG", "warn"),
            ],
            &accepted,
            8,
            Duration::from_secs(1),
            Duration::from_secs(15),
        );
    })
    .await
    .expect("every run was checked");
}
