//! Servers that misbehave: each gets a one-line error and its exit code, in bounded time.

use std::time::{Duration, Instant};

use pp_lib::testkit::ports::closed_port;
use pp_lib::testkit::process::{assert_exit, stderr, stdout};
use pp_lib::testkit::{SLACK, assert_prompt};

use crate::helpers::{Reply, TestServer, assert_one_line_error, run_cli};

#[test]
fn a_refused_connection_exits_3() {
    let closed = closed_port();

    let output = run_cli(closed.addr(), &[]);

    assert_exit(&output, 3);
    assert_one_line_error(&output, "cannot connect to 127.0.0.1:");
}

#[test]
fn a_server_that_never_answers_times_out_with_6() {
    // Silent for longer than the timeout and the slack for load.
    let server = TestServer::start(Reply::Silence(SLACK * 3));
    let started = Instant::now();

    let output = run_cli(server.addr, &["--timeout", "500ms"]);

    assert_exit(&output, 6);
    assert_one_line_error(&output, "timed out after 500ms waiting for the response");
    assert_prompt(started.elapsed(), Duration::from_millis(500), "the timeout");
}

#[test]
fn a_server_that_trickles_cannot_stretch_the_deadline() {
    // Each read gets a byte well within the timeout; the whole exchange still must not.
    let mut pieces = vec![b"HTTP/1.1 200 OK\r\n".to_vec()];
    // 60 s of them in all: a deadline per read would let it run far past the slack for load.
    pieces.extend(std::iter::repeat_n(b"X: y\r\n".to_vec(), 600));
    let server = TestServer::start(Reply::Trickle(pieces, Duration::from_millis(100)));
    let started = Instant::now();

    let output = run_cli(server.addr, &["--timeout", "500ms"]);

    assert_exit(&output, 6);
    assert_one_line_error(&output, "timed out after 500ms reading the response");
    assert_prompt(
        started.elapsed(),
        Duration::from_millis(500),
        "the deadline",
    );
}

#[test]
fn malformed_responses_exit_7_with_the_reason() {
    let cases = [
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
            "invalid chunk size line `zz`",
        ),
        (
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
            "a chunk's data is not followed by CRLF",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\nabc",
            "the body is larger than 16777216 bytes",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            "invalid Content-Length `-1`",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            "the connection closed 3 bytes into a body of 10 bytes",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
            "the connection closed before the end of the response headers",
        ),
        (
            "",
            "the server closed the connection without sending anything",
        ),
        (
            "SSH-2.0-OpenSSH_9.6\r\n",
            "invalid status line `SSH-2.0-OpenSSH_9.6`",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "both Transfer-Encoding and Content-Length",
        ),
        (
            "HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            "obsolete line folding",
        ),
    ];
    for (reply, reason) in cases {
        let server = TestServer::replying(reply);

        let output = run_cli(server.addr, &[]);

        assert_eq!(output.status.code(), Some(7), "{reply:?}");
        assert_one_line_error(&output, &format!("malformed response: {reason}"));
        assert_eq!(stdout(&output), "", "{reply:?}");
    }
}

#[test]
fn an_endless_header_is_refused_without_waiting_for_its_end() {
    let mut reply = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    reply.resize(200 * 1024, b'a');
    let server = TestServer::start(Reply::Bytes(reply));

    let output = run_cli(server.addr, &[]);

    assert_exit(&output, 7);
    assert_one_line_error(&output, "header section is larger than 65536 bytes");
}

#[test]
fn raw_shows_what_came_before_a_malformed_response_failed() {
    let reply = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let server = TestServer::replying(reply);

    let output = run_cli(server.addr, &["--raw"]);

    assert_exit(&output, 7);
    assert_eq!(stdout(&output), reply);
    let stderr = stderr(&output);
    assert!(stderr.contains("Connection: close\r\n"), "{stderr}");
    assert!(
        stderr.ends_with("cli_02: error: malformed response: invalid chunk size line `zz`\n"),
        "{stderr}"
    );
}
