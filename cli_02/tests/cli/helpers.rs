//! A scripted one-connection server and a way to run the binary.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Output},
    sync::mpsc,
    thread,
    time::Duration,
};

/// What the server does once it has read the request.
pub enum Reply {
    /// Writes these bytes and closes.
    Bytes(Vec<u8>),
    /// Writes these pieces with a pause before each, then closes.
    Trickle(Vec<Vec<u8>>, Duration),
    /// Says nothing and keeps the connection open for this long.
    Silence(Duration),
}

/// A server that answers one connection; `requests` yields the request bytes it read.
pub struct TestServer {
    pub addr: SocketAddr,
    pub requests: mpsc::Receiver<Vec<u8>>,
}

impl TestServer {
    /// Serves `reply` to the first connection on a fresh port.
    pub fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (sender, requests) = mpsc::channel();
        thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let request = read_request(&mut stream);
            let _ = sender.send(request);
            // Write errors are the client's business (it may have given up): ignore them.
            match reply {
                Reply::Bytes(bytes) => {
                    let _ = stream.write_all(&bytes);
                }
                Reply::Trickle(pieces, pause) => {
                    for piece in pieces {
                        thread::sleep(pause);
                        if stream.write_all(&piece).is_err() {
                            break;
                        }
                    }
                }
                Reply::Silence(duration) => thread::sleep(duration),
            }
        });
        Self { addr, requests }
    }

    /// Serves `text` as the reply.
    pub fn replying(text: &str) -> Self {
        Self::start(Reply::Bytes(text.as_bytes().to_vec()))
    }

    /// The request the server read.
    pub fn request(&self) -> String {
        let bytes = self
            .requests
            .recv_timeout(Duration::from_secs(5))
            .expect("the server read a request");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Reads a request head and a body of its Content-Length.
fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut byte = [0; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return request,
        }
    }
    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|length| length.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if stream.read_exact(&mut body).is_ok() {
        request.extend_from_slice(&body);
    }
    request
}

/// Runs cli_02 with `--addr addr` and `args`.
pub fn run_cli(addr: SocketAddr, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cli_02"))
        .arg("--addr")
        .arg(addr.to_string())
        .args(args)
        .output()
        .expect("the cli_02 binary runs")
}

/// Asserts the error is one line in cli_02's format, containing `text`.
pub fn assert_one_line_error(output: &Output, text: &str) {
    pp_lib::testkit::process::assert_one_line_error(output, "cli_02", text);
}
