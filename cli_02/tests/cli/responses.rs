//! Well-formed responses: what is printed, what is sent, and the exit code of each class.

use pp_lib::testkit::process::{assert_exit, stderr, stdout};

use crate::helpers::{TestServer, run_cli};

#[test]
fn a_json_response_is_pretty_printed_and_exits_0() {
    let body = r#"[{"id":21,"work_code":"api-bjq8euwsEA","add_up_to":4,"done":false}]"#;
    let server = TestServer::replying(&format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));

    let output = run_cli(server.addr, &[]);

    assert_exit(&output, 0);
    let expected = "HTTP/1.1 200 OK\n[\n  {\n    \"id\": 21,\n    \"work_code\": \"api-bjq8euwsEA\",\n    \
                    \"add_up_to\": 4,\n    \"done\": false\n  }\n]\n";
    assert_eq!(stdout(&output), expected);
    let request = server.request();
    assert!(
        request.starts_with("GET /work/search?work_code=api HTTP/1.1\r\n"),
        "{request}"
    );
}

#[test]
fn a_chunked_response_is_decoded() {
    let server = TestServer::replying(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
         6;ext=1\r\nhello \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
    );

    let output = run_cli(server.addr, &["/healthz"]);

    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "HTTP/1.1 200 OK\nhello world\n");
}

#[test]
fn a_body_until_close_is_read_to_the_end() {
    let server = TestServer::replying("HTTP/1.0 200 OK\r\n\r\nno length given");

    let output = run_cli(server.addr, &[]);

    assert_exit(&output, 0);
    assert_eq!(stdout(&output), "HTTP/1.0 200 OK\nno length given\n");
}

#[test]
fn client_and_server_errors_exit_4_and_5() {
    let cases = [
        ("404 Not Found", 4),
        ("400 Bad Request", 4),
        ("500 Internal Server Error", 5),
        ("503 Service Unavailable", 5),
        ("302 Found", 0),
    ];
    for (status, code) in cases {
        let body = r#"{"http_code":0,"message":"m"}"#;
        let server = TestServer::replying(&format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));

        let output = run_cli(server.addr, &["/work/7"]);

        assert_eq!(output.status.code(), Some(code), "{status}");
        assert!(
            stdout(&output).starts_with(&format!("HTTP/1.1 {status}\n{{\n")),
            "{status}"
        );
    }
}

#[test]
fn data_is_posted_as_json_with_its_length() {
    let server = TestServer::replying("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");

    let output = run_cli(
        server.addr,
        &[
            "/work",
            "-d",
            r#"{"add_up_to": 4}"#,
            "-H",
            "Idempotency-Key: k1",
        ],
    );

    assert_exit(&output, 0);
    let request = server.request();
    assert!(request.starts_with("POST /work HTTP/1.1\r\n"), "{request}");
    for header in [
        "Content-Type: application/json",
        "Content-Length: 16",
        "Idempotency-Key: k1",
    ] {
        assert!(
            request.contains(&format!("\r\n{header}\r\n")),
            "{header} in {request}"
        );
    }
    assert!(request.ends_with("\r\n\r\n{\"add_up_to\": 4}"), "{request}");
}

#[test]
fn raw_shows_the_bytes_sent_on_stderr_and_only_the_bytes_received_on_stdout() {
    let reply = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let server = TestServer::replying(reply);

    let output = run_cli(server.addr, &["--raw", "-X", "HEAD", "/healthz"]);

    assert_exit(&output, 0);
    let stderr = stderr(&output);
    let sent = server.request();
    assert!(sent.contains("\r\nConnection: close\r\n\r\n"), "{sent}");
    assert!(stderr.contains(&sent), "the exact request in {stderr:?}");
    assert!(stderr.starts_with("cli_02: sent "), "{stderr}");
    assert_eq!(stdout(&output), reply);
}
