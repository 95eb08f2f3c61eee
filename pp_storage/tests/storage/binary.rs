//! The `pp_storage` binary run as a user runs it: migrate, status, verify, reset and its
//! refusals.

use pp_lib::config::SecretUrl;
use pp_lib::db::works::insert_work;
use pp_lib::work::NewWork;
use pp_storage::database_exists;
use pp_storage::testkit::{TestDatabase, finish_work};
use std::process::{Command, Output};

fn pp_storage(url: &SecretUrl, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pp_storage"))
        .args(args)
        .env("DATABASE_URL", url.expose())
        .env("RUST_LOG", "warn")
        .output()
        .expect("pp_storage runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn migrate_creates_the_database_then_status_lists_the_migrations() {
    let db = TestDatabase::create();
    let scratch = db.scratch("cli");
    let url = scratch.url();

    let migrate = pp_storage(url, &["migrate"]);
    let status = pp_storage(url, &["status"]);
    let again = pp_storage(url, &["migrate"]);
    let mut admin = db.connect();
    let existed = database_exists(&mut admin, url.path()).expect("exists");

    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(
        stdout(&migrate).contains(&format!("created database {}", url.path())),
        "{}",
        stdout(&migrate)
    );
    assert!(
        stdout(&migrate).contains("applied 2026-11-21-190000_create_works"),
        "{}",
        stdout(&migrate)
    );
    assert!(existed);

    assert!(status.status.success(), "{}", stderr(&status));
    let listing = stdout(&status);
    assert!(
        listing.contains("applied  2026-11-21-190000_create_works"),
        "{listing}"
    );
    assert!(
        listing.contains("applied  2026-11-21-190100_create_events"),
        "{listing}"
    );
    assert!(listing.contains("0 pending"), "{listing}");

    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("(0 applied now)"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn reset_refuses_without_yes_and_keeps_the_data() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_work(&mut conn, &NewWork::from_api(5)).expect("insert");

    let refused = pp_storage(db.url(), &["reset"]);

    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("run `pp_storage reset --yes` to confirm"),
        "{}",
        stderr(&refused)
    );
    let still_there = pp_lib::db::works::find_work(&mut conn, work.id).expect("query");
    assert_eq!(still_there, Some(work));

    let confirmed = pp_storage(db.url(), &["reset", "--yes"]);
    assert!(confirmed.status.success(), "{}", stderr(&confirmed));
    let mut conn = db.connect();
    assert_eq!(
        pp_lib::db::works::find_work(&mut conn, 1).expect("query"),
        None
    );
}

#[test]
fn an_unreachable_server_is_one_clear_line_without_the_password() {
    let url: SecretUrl = "postgres://pp:hunter2@127.0.0.1:1/pp"
        .parse()
        .expect("a valid URL");

    let output = pp_storage(&url, &["status"]);

    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.starts_with("pp_storage: error: "), "{message}");
    assert!(message.contains("make setup"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{message}");
}

#[test]
fn status_of_a_missing_database_says_how_to_create_it() {
    let db = TestDatabase::create();
    let scratch = db.scratch("missing");

    let output = pp_storage(scratch.url(), &["status"]);

    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("does not exist"), "{message}");
    assert!(message.contains("pp_storage migrate"), "{message}");
}

/// No setting makes pp_storage panic: every flag that takes a number or a duration, given every
/// extreme value, is refused by clap with a one-line error, or taken by the real binary, which
/// answers `status` and `check` without a panic.
#[test]
fn no_flag_value_makes_pp_storage_panic() {
    use clap::CommandFactory;
    use pp_lib::testkit::flags::{accepted, probes, run_accepted};
    let db = TestDatabase::create();
    let command = pp_storage::cli::Cli::command();
    let mut runs = accepted(&command, &probes(&command, &["pp_storage", "status"]));
    runs.extend(accepted(
        &command,
        &probes(&command, &["pp_storage", "check", "postgresql"]),
    ));
    assert!(
        runs.iter().any(|probe| probe.flag == "wait"),
        "check's wait is probed"
    );
    run_accepted(
        std::path::Path::new(env!("CARGO_BIN_EXE_pp_storage")),
        &[("DATABASE_URL", db.url().expose())],
        &runs,
        8,
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(10),
    );
}

#[test]
fn verify_passes_right_works_and_names_a_wrong_one_with_exit_3() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let pending = insert_work(&mut conn, &NewWork::from_api(3)).expect("insert");
    let done = insert_work(&mut conn, &NewWork::from_api(4)).expect("insert");
    finish_work(&mut conn, &done);

    let right = pp_storage(db.url(), &["verify"]);
    diesel::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "update events set value = '11' where work_id = {} and variable = 'compute/result'",
            done.id
        )),
        &mut conn,
    )
    .expect("tamper with an event");
    let wrong = pp_storage(db.url(), &["verify"]);

    assert!(right.status.success(), "{}", stderr(&right));
    assert!(
        stdout(&right).ends_with("2 work(s) checked, 0 wrong\n"),
        "{}",
        stdout(&right)
    );
    assert_eq!(wrong.status.code(), Some(3), "{}", stderr(&wrong));
    let report = stdout(&wrong);
    assert!(report.contains("2 work(s) checked, 1 wrong"), "{report}");
    assert!(
        report.contains(&format!(
            "work {} ({}): its compute/result event says 11, its result is 10",
            done.id, done.work_code
        )),
        "{report}"
    );
    assert!(!report.contains(&pending.work_code), "{report}");
}
