//! The command line: bad usage exits 2 before anything is asked, `--help` documents every flag
//! with examples and never shows a secret, and completions are printed for the shells.

use std::process::Command;

use pp_lib::testkit::ports::closed_port;
use pp_lib::testkit::process::{assert_exit, stderr, stdout};

use crate::helpers::run_cli;

#[test]
fn bad_usage_exits_2_before_anything_is_asked() {
    // A closed port: were anything asked, the exit would be 3.
    let closed = closed_port();
    let url = format!("http://{closed}");
    let cases: [&[&str]; 10] = [
        &[],
        &["get"],
        &["get", "abc"],
        &["get", "0"],
        &["search"],
        &["search", "api-", "--since", "soon"],
        &["search", "api-", "--done", "maybe"],
        &["create", "--add-up-to", "-3"],
        &["--via", "pigeon", "stats"],
        &["stats", "--api-url", "ftp://example.com"],
    ];
    for args in cases {
        let output = run_cli(&[&["--api-url", url.as_str()][..], args].concat());

        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with("error: ") || stderr(&output).starts_with("Usage: "),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(!stderr(&output).contains("panicked"), "{args:?}");
    }
}

#[test]
fn help_explains_every_flag_with_examples_and_the_exit_codes() {
    let output = run_cli(&["--help"]);

    assert_exit(&output, 0);
    let help = stdout(&output);
    for text in [
        "--via <VIA>",
        "--api-url <URL>",
        "--database-url <URL>",
        "--output <OUTPUT>",
        "--timeout <DURATION>",
        "Examples:",
        "Exit status:",
        "  3  the API or the database cannot be reached",
        "  4  no work with that id",
    ] {
        assert!(help.contains(text), "{text} in {help}");
    }
    for subcommand in [
        "get",
        "search",
        "create",
        "demand",
        "events",
        "stats",
        "completions",
    ] {
        let output = run_cli(&[subcommand, "--help"]);
        assert_exit(&output, 0);
        assert!(
            stdout(&output).contains(&format!("Examples:\n  cli_01 {subcommand}")),
            "{subcommand}: {}",
            stdout(&output)
        );
    }
}

#[test]
fn help_never_shows_a_password_from_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_cli_01"))
        .arg("--help")
        .env("DATABASE_URL", "postgres://pp:hunter2@db/pp")
        .env("PP_API_URL", "http://pp:hunter2@api:3000")
        .output()
        .expect("cli_01 runs");

    assert_exit(&output, 0);
    assert!(!stdout(&output).contains("hunter2"), "{}", stdout(&output));
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "complete -F _cli_01"),
        ("zsh", "#compdef cli_01"),
        ("fish", "complete -c cli_01"),
    ] {
        let output = run_cli(&["completions", shell]);

        assert_exit(&output, 0);
        let script = stdout(&output);
        assert!(script.contains(marker), "{shell}: {marker}");
        assert!(script.contains("search"), "{shell}: the subcommands");
        assert!(script.contains("--via"), "{shell}: the flags");
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cli_01"))
        .args(["completions", "bash"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cli_01 starts");
    // Close the pipe before (or while) it writes, as `| head -1` does.
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("cli_01 ends");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "",
        "no error for a closed pipe"
    );
}

/// No setting makes cli_01 panic: every flag that takes a number or a duration, given every
/// extreme value, is refused with a one-line error (exit 2), or taken — then the real binary
/// asks an API that never answers (or the database) and stops on SIGTERM without a panic.
#[test]
fn no_flag_value_makes_cli_01_panic() {
    use clap::CommandFactory;
    use pp_lib::testkit::flags::{accepted, probes, run_accepted};
    let db = pp_storage::testkit::TestDatabase::create();
    // Connections are taken into the backlog and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let silent_url = format!("http://{}", silent.local_addr().expect("its address"));
    let command = cli_01::cli::Cli::command();
    let mut runs = Vec::new();
    for base in [
        &["cli_01", "stats"][..],
        &["cli_01", "--via", "db", "stats"],
        &["cli_01", "search", "api-"],
        &["cli_01", "--via", "db", "search", "api-"],
    ] {
        runs.extend(accepted(&command, &probes(&command, base)));
    }
    assert!(
        !runs
            .iter()
            .any(|probe| probe.flag == "timeout" && probe.value == "999999999d"),
        "a timeout beyond any clock is refused"
    );
    run_accepted(
        std::path::Path::new(env!("CARGO_BIN_EXE_cli_01")),
        &[
            ("PP_API_URL", silent_url.as_str()),
            ("DATABASE_URL", db.url().expose()),
        ],
        &runs,
        8,
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(10),
    );
}
