//! The pool: working connections, statement timeouts, bounded and redacted connection failures.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use pp_lib::config::DatabaseConfig;
use pp_lib::db::{build_pool, build_pool_lazy, with_connection};
use pp_lib::testkit::{eventually_blocking, exactly};
use pp_storage::testkit::TestDatabase;

#[test]
fn pooled_connections_run_queries() {
    let db = TestDatabase::create();
    let pool = db.pool();
    let mut conn = pool.get().expect("a pooled connection");
    let name: String = diesel::select(diesel::dsl::sql::<diesel::sql_types::Text>(
        "current_database()",
    ))
    .get_result(&mut conn)
    .expect("query");
    assert_eq!(name, db.name());
}

#[test]
fn statement_timeout_cancels_long_queries() {
    let db = TestDatabase::create();
    let config = DatabaseConfig {
        statement_timeout: Duration::from_millis(100),
        ..db.config()
    };
    let pool = build_pool(&config).expect("pool");
    let mut conn = pool.get().expect("a pooled connection");

    let error = diesel::sql_query("select pg_sleep(5)")
        .execute(&mut conn)
        .expect_err("the statement is cancelled");
    assert!(error.to_string().contains("statement timeout"), "{error}");
}

#[test]
fn unreachable_server_fails_fast_without_showing_the_password() {
    // Port 1 on loopback refuses at once; the error must come back within the connect timeout.
    let config = DatabaseConfig {
        connect_timeout: Duration::from_secs(2),
        ..DatabaseConfig::for_url(
            "postgres://pp:hunter2@127.0.0.1:1/pp"
                .parse()
                .expect("a valid URL"),
        )
    };
    let started = Instant::now();

    let error = build_pool(&config).expect_err("nothing listens on port 1");

    pp_lib::testkit::assert_prompt(
        started.elapsed(),
        config.connect_timeout,
        "a refused connection",
    );
    assert!(error.is_transient(), "{error:?}");
    let message = error.to_string();
    assert!(!message.contains("hunter2"), "{message}");
    assert!(
        message.contains("postgres://pp:***@127.0.0.1:1/pp"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");
}

#[test]
fn lazy_pool_reports_a_missing_server_at_checkout() {
    let config = DatabaseConfig {
        connect_timeout: Duration::from_millis(500),
        ..DatabaseConfig::for_url(
            "postgres://pp:hunter2@127.0.0.1:1/pp"
                .parse()
                .expect("a valid URL"),
        )
    };
    let pool = build_pool_lazy(&config);

    let Err(error) = pool.get() else {
        panic!("a pool without a server gives no connection");
    };
    let error = pp_lib::Error::from(error);

    assert!(matches!(error, pp_lib::Error::Pool(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[test]
fn a_connection_the_server_closed_is_replaced_after_one_failure() {
    let db = TestDatabase::create();
    let config = DatabaseConfig {
        pool_size: 1,
        ..db.config()
    };
    let pool = build_pool(&config).expect("pool");
    let backend_pid = |conn: &mut PgConnection| -> Result<i32, pp_lib::Error> {
        Ok(
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>(
                "pg_backend_pid()",
            ))
            .get_result(conn)?,
        )
    };
    let first_pid = with_connection(&pool, backend_pid).expect("a first query");
    let mut admin = db.connect();
    diesel::sql_query(format!("select pg_terminate_backend({first_pid})"))
        .execute(&mut admin)
        .expect("terminate the pooled connection's backend");
    eventually_blocking("the backend to be gone", || {
        exactly(
            db.count(&format!(
                "select count(*) as n from pg_stat_activity where pid = {first_pid}"
            )),
            0,
        )
    });

    let failed = with_connection(&pool, backend_pid).expect_err("the closed connection fails once");
    assert!(failed.is_transient(), "{failed:?}");
    let second_pid = with_connection(&pool, backend_pid).expect("a fresh connection serves");

    assert_ne!(second_pid, first_pid);
}

/// Set in the copies of this test binary that [`a_process_exits_cleanly_while_its_threads_open_connections`]
/// runs: the database they connect to.
const EXIT_RACE_URL: &str = "PP_TEST_EXIT_RACE_URL";

/// A process ends while other threads are still opening connections (a pool connecting in the
/// background, a listener reconnecting): the exit must not crash in the libraries libpq uses.
/// The test runs copies of its own binary, each running only this test with `EXIT_RACE_URL`
/// set: four threads connect over and over while the test returns and the process exits.
#[test]
fn a_process_exits_cleanly_while_its_threads_open_connections() {
    const COPIES: u64 = 20;
    if let Some(url) = std::env::var_os(EXIT_RACE_URL) {
        let url: pp_lib::config::SecretUrl = url
            .to_str()
            .expect("a UTF-8 URL")
            .parse()
            .expect("a valid URL");
        // Each connection opened is told; the test returns (and the process exits) after a
        // number of them that varies by copy, while the other threads are still connecting.
        let (opened, heard) = std::sync::mpsc::channel::<()>();
        for _ in 0..4 {
            let url = url.clone();
            let opened = opened.clone();
            std::thread::spawn(move || {
                loop {
                    let _ = pp_lib::db::establish(&url, Duration::from_secs(5));
                    let _ = opened.send(());
                }
            });
        }
        let connections: usize = std::env::var("PP_TEST_EXIT_RACE_CONNECTIONS")
            .ok()
            .and_then(|count| count.parse().ok())
            .unwrap_or(1);
        for _ in 0..connections {
            heard.recv().expect("the connecting threads run");
        }
        return;
    }
    let db = TestDatabase::create();
    let test = "pool::a_process_exits_cleanly_while_its_threads_open_connections";
    for copy in 0..COPIES {
        let output = std::process::Command::new(std::env::current_exe().expect("this binary"))
            .args(["--exact", test, "--test-threads", "1"])
            .env(EXIT_RACE_URL, db.url().expose())
            // Exits at varied points of the other thread's connection.
            .env("PP_TEST_EXIT_RACE_CONNECTIONS", (1 + copy % 8).to_string())
            .output()
            .expect("a copy of the test binary runs");
        assert!(
            output.status.success(),
            "copy {copy} ended with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
