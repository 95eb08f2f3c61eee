//! The command line: bad usage exits 2 before anything is sent, and --help documents the exits.

use clap::CommandFactory;
use cli_02::Cli;

use pp_lib::testkit::ports::closed_port;
use pp_lib::testkit::process::{assert_exit, stderr, stdout};

use crate::helpers::run_cli;

#[test]
fn verify_cli() {
    Cli::command().debug_assert();
}

#[test]
fn bad_usage_exits_2_before_connecting() {
    let cases: [&[&str]; 8] = [
        &["-H", "NoColon"],
        &["-H", "Bad Name: v"],
        &["-H", "X: a\r\nInjected: yes"],
        &["-H", "Content-Length: 3"],
        &["-X", "GE T"],
        &["work/search"],
        &["/a b"],
        &["--timeout", "soon"],
    ];
    // A refused port: were anything sent, the exit would be 3.
    let closed = closed_port();
    for args in cases {
        let output = run_cli(closed.addr(), args);

        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).starts_with("error: "),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn help_lists_the_exit_codes() {
    let output = run_cli(closed_port().addr(), &["--help"]);

    assert_exit(&output, 0);
    let help = stdout(&output);
    for line in [
        "Exit status:",
        "  3  connection failure",
        "  6  timed out",
        "  7  malformed response",
    ] {
        assert!(help.contains(line), "{line} in {help}");
    }
}

/// No setting makes cli_02 panic: every flag that takes a number or a duration, given every
/// extreme value, is refused with a one-line error, or taken — then the real binary waits on a
/// server that never answers and stops on SIGTERM without a panic.
#[test]
fn no_flag_value_makes_cli_02_panic() {
    use pp_lib::testkit::flags::{accepted, probes, run_accepted};
    // Connections are taken into the backlog and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = silent.local_addr().expect("its address").to_string();
    let command = Cli::command();
    let runs = accepted(
        &command,
        &probes(&command, &["cli_02", "--addr", addr.as_str(), "/healthz"]),
    );
    assert!(
        runs.iter().any(|probe| probe.flag == "timeout"),
        "the timeout is probed"
    );
    run_accepted(
        std::path::Path::new(env!("CARGO_BIN_EXE_cli_02")),
        &[],
        &runs,
        8,
        std::time::Duration::from_millis(500),
        std::time::Duration::from_secs(10),
    );
}
