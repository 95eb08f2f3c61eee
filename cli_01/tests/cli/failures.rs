//! Failures: one line on stderr, nothing on stdout, and the exit code of their kind, whichever
//! way the question went.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::config::DatabaseConfig;
use pp_lib::testkit::assert_prompt;
use pp_lib::testkit::ports::closed_port;
use pp_lib::testkit::process::{assert_exit, stderr};

use crate::helpers::{RunCli, VIAS, assert_one_line_error, run_cli, run_cli_async};

#[tokio::test]
async fn an_unknown_work_exits_4_with_the_apis_message_both_ways() {
    let api = TestApp::spawn(TestSettings::new()).await;

    for via in VIAS {
        for command in ["get", "events"] {
            let output = api.cli(via, &[command, "424242"]).await;

            assert_exit(&output, 4);
            assert_one_line_error(&output, "no work with id 424242");
            assert_eq!(
                stderr(&output),
                "cli_01: error: no work with id 424242\n",
                "{command} --via {via}"
            );
        }
    }
}

#[test]
fn an_unreachable_api_exits_3() {
    let closed = closed_port();
    let url = format!("http://{closed}");

    let output = run_cli(&["--api-url", &url, "get", "7"]);

    assert_exit(&output, 3);
    assert_one_line_error(&output, &format!("cannot reach the API at {url}: "));
    assert_one_line_error(&output, "Connection refused");
}

#[test]
fn an_api_that_never_answers_times_out_with_3() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    let started = Instant::now();

    // The listener accepts connections (the kernel completes them) but never answers.
    let output = run_cli(&["--api-url", &url, "--timeout", "500ms", "stats"]);

    assert_exit(&output, 3);
    assert_one_line_error(&output, "no answer within 500ms");
    assert_prompt(started.elapsed(), Duration::from_millis(500), "the timeout");
    drop(listener);
}

#[test]
fn an_unreachable_database_exits_3_without_showing_the_password() {
    let closed = closed_port();
    let url = format!("postgres://pp:hunter2@{closed}/pp");

    let output = run_cli(&["--via", "db", "--database-url", &url, "stats"]);

    assert_exit(&output, 3);
    assert_one_line_error(
        &output,
        "cannot connect to PostgreSQL at postgres://pp:***@",
    );
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
}

#[tokio::test]
async fn an_api_whose_database_is_down_exits_3() {
    // Sabotage: the API serves, but its database is a closed port.
    let closed = closed_port();
    let database = closed.addr();
    let api = TestApp::spawn(TestSettings::new().with(move |settings| {
        settings.database = DatabaseConfig {
            connect_timeout: Duration::from_secs(1),
            ..DatabaseConfig::for_url(
                format!("postgres://postgres@{database}/pp")
                    .parse()
                    .expect("a URL"),
            )
        };
    }))
    .await;
    let url = api.address.clone();

    let output = run_cli_async(vec!["--api-url".into(), url.clone(), "stats".into()]).await;

    assert_exit(&output, 3);
    assert_one_line_error(
        &output,
        &format!("the API at {url} cannot serve now: database unavailable"),
    );
}

#[tokio::test]
async fn a_broken_schema_is_a_failure_of_its_own_both_ways() {
    let api = TestApp::spawn(TestSettings::new()).await;
    let mut conn = api.db.connect();
    diesel::RunQueryDsl::execute(diesel::sql_query("drop table events"), &mut conn)
        .expect("sabotage");

    let http = api.cli("http", &["stats"]).await;
    let db = api.cli("db", &["stats"]).await;

    assert_exit(&http, 1);
    assert_one_line_error(&http, "the API answered 500: internal error");
    assert_exit(&db, 1);
    assert_one_line_error(
        &db,
        "database query failed: relation \"events\" does not exist",
    );
}
