//! The command line, and [`run`]: one exchange from arguments to printed output.
//!
//! Every argument is checked by a clap value parser, so bad usage exits 2 with clap's message
//! before a connection is attempted.

use std::{io::Write, time::Duration};

use clap::Parser;

use crate::{
    client::{self, Transcript},
    error::{EXIT_STATUS, Error},
    output,
    request::{self, HeaderField, Request},
};

/// Where the API listens by default (pp_backend_api's `PP_HTTP_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:3000";
/// The request target by default: works created through the API in the last hour.
pub const DEFAULT_PATH: &str = "/work/search?work_code=api";
/// How long the whole exchange may take by default.
pub const DEFAULT_TIMEOUT: &str = "5s";

/// One HTTP/1.1 exchange with the pp API over a raw TCP stream, written by hand.
///
/// Builds the request bytes itself, sends them over a TcpStream, parses the response by hand
/// (Content-Length, chunked or until close) and prints its status line and body.
#[derive(Debug, Parser)]
#[command(version, about, after_help = EXIT_STATUS)]
pub struct Cli {
    /// The server, as host:port; also sent as the Host header.
    #[arg(long, default_value = DEFAULT_ADDR, value_parser = request::parse_addr)]
    pub addr: String,

    /// The request method [default: GET, or POST with --data].
    #[arg(short = 'X', long = "request", value_name = "METHOD", value_parser = request::parse_method)]
    pub method: Option<String>,

    /// The request target: an absolute path, with a query if any.
    #[arg(default_value = DEFAULT_PATH, value_parser = request::parse_target)]
    pub path: String,

    /// An extra header, `Name: value`; repeat for more. Host, User-Agent, Accept and
    /// Content-Type replace the defaults.
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = request::parse_header_field)]
    pub headers: Vec<HeaderField>,

    /// A request body, sent with its Content-Length (and Content-Type: application/json unless
    /// -H gives one).
    #[arg(short = 'd', long = "data", value_name = "BODY")]
    pub data: Option<String>,

    /// Show the exact bytes: those sent on stderr, those received (and nothing else) on stdout.
    #[arg(long)]
    pub raw: bool,

    /// Bounds name resolution, connecting, each write and read, and the whole exchange, e.g.
    /// 500ms, 5s, 1m.
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_timeout)]
    pub timeout: Duration,
}

impl Cli {
    /// The request these arguments describe.
    pub fn request(&self) -> Request {
        let method = match (&self.method, &self.data) {
            (Some(method), _) => method.clone(),
            (None, Some(_)) => "POST".to_owned(),
            (None, None) => "GET".to_owned(),
        };
        Request {
            method,
            target: self.path.clone(),
            host: self.addr.clone(),
            headers: self.headers.clone(),
            body: self.data.as_ref().map(|data| data.as_bytes().to_vec()),
        }
    }
}

/// A positive duration, in `pp_lib`'s syntax.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    pp_lib::config::positive_duration_setting(text)
}

/// Runs the exchange and prints it; the response's status, for the exit code.
pub fn run(cli: &Cli, out: &mut impl Write, err: &mut impl Write) -> Result<u16, Error> {
    let request = cli.request();
    let bytes = request::encode_request(&request);
    let mut transcript = Transcript::default();
    let outcome = client::exchange(
        &cli.addr,
        &bytes,
        &request.method,
        cli.timeout,
        &mut transcript,
    );
    // With --raw the bytes are shown even when the exchange failed: that is when they help.
    if cli.raw {
        output::write_raw(out, err, &transcript).map_err(Error::Output)?;
    }
    let response = outcome?;
    if !cli.raw {
        output::write_response(out, &response).map_err(Error::Output)?;
        out.flush().map_err(Error::Output)?;
    }
    Ok(response.status)
}
