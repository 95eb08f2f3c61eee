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
