//! `make bench-overload`: the API under a thousand connections against a database slowed on
//! purpose, with load shedding and without.
//!
//! A fresh database of 10,000 works sits behind a proxy that holds every answer of PostgreSQL
//! back `--delay-ms` (default 300): each statement is that much slower, so the API can serve far
//! fewer requests than wrk's `--connections` (default 1000) ask for. wrk asks `GET /work/{id}`
//! for `--seconds` (default 20) against the release API twice: with `PP_HTTP_DEADLINE=1s`
//! (requests no database thread takes within a second are answered 503 and never run) and with
//! `PP_HTTP_DEADLINE=10m` (in effect, no shedding). It prints, for each, the answers by status,
//! the latency percentiles and wrk's errors, and exits 1 if the shedding run answered anything
//! but 200 or 503 or let a request time out. Each flag can be given by its variable too
//! (`PP_OVERLOAD_SECONDS`, `PP_OVERLOAD_CONNECTIONS`, `PP_OVERLOAD_DELAY_MS`).

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use diesel::RunQueryDsl;
use pp_lib::testkit::{TcpProxy, socket_addr_of, via, within};
use pp_storage::testkit::TestDatabase;

/// The API under a thousand connections against a slowed database, with load shedding and
/// without.
#[derive(Debug, Parser)]
#[command(name = "overload")]
struct Args {
    /// Seconds wrk runs against each API (5 to 120).
    #[arg(long, env = "PP_OVERLOAD_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(5..=120))]
    seconds: u64,
    /// wrk's connections (10 to 5000).
    #[arg(long, env = "PP_OVERLOAD_CONNECTIONS", default_value_t = 1_000,
          value_parser = clap::value_parser!(u64).range(10..=5_000))]
    connections: u64,
    /// Milliseconds every answer of PostgreSQL is held back (1 to 5000).
    #[arg(long, env = "PP_OVERLOAD_DELAY_MS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=5_000))]
    delay_ms: u64,
}

/// The longest the API may take to answer after its start.
const API_START_LIMIT: Duration = Duration::from_secs(30);

/// wrk: random ids, answers counted by status, one machine-readable line at the end.
const WRK_SCRIPT: &str = r#"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) ok = 0; busy = 0; other = 0 end
request = function()
  return wrk.format("GET", "/work/" .. math.random(1, 10000))
end
function response(status, headers, body)
  if status == 200 then ok = ok + 1 elseif status == 503 then busy = busy + 1 else other = other + 1 end
end
function done(summary, latency, requests)
  local o, b, x = 0, 0, 0
  for _, t in ipairs(threads) do o = o + t:get("ok"); b = b + t:get("busy"); x = x + t:get("other") end
  local e = summary.errors
  io.write(string.format(
    "RESULT ok=%d busy=%d other=%d p50_ms=%.0f p99_ms=%.0f max_ms=%.0f rps=%.0f connect=%d read=%d write=%d timeout=%d\n",
    o, b, x, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests / (summary.duration / 1e6), e.connect, e.read, e.write, e.timeout))
end
"#;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("overload: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let Args {
        seconds,
        connections,
        delay_ms,
    } = args;
    let api_binary = std::env::current_exe()
        .context("where am I")?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("pp_backend_api"))
        .context("the build directory")?;
    if !api_binary.exists() {
        bail!(
            "{} is not built: run `make bench-overload`",
            api_binary.display()
        );
    }
    let db = tokio::task::spawn_blocking(|| {
        let db = TestDatabase::create();
        let mut conn = db.connect();
        diesel::sql_query(
            "insert into works (work_code, add_up_to, done, result) \
             select 'api-' || lpad(i::text, 10, '0'), i % 100, true, (i % 100) * (i % 100 + 1) / 2 \
             from generate_series(1, 10000) as i",
        )
        .execute(&mut conn)
        .map(|_| db)
    })
    .await
    .context("seeding")?
    .context("seeding 10,000 works")?;
    let proxy = TcpProxy::start_slowed(
        socket_addr_of(db.url(), 5432),
        Duration::from_millis(delay_ms),
    );
    let script = std::env::temp_dir().join(format!("pp-overload-{}.lua", std::process::id()));
    std::fs::write(&script, WRK_SCRIPT).context("writing the wrk script")?;
    println!(
        "overload: wrk, {connections} connections, {seconds} s of GET /work/{{id}}; PostgreSQL \
         {delay_ms} ms slower on every round trip; release API, pool of 8"
    );
    println!(
        "\n{:<34} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>7} {:>14}",
        "", "200", "503", "other", "p50 ms", "p99 ms", "max ms", "req/s", "wrk errors"
    );
    let mut healthy = true;
    for (label, deadline, is_shedding) in [
        ("shedding (PP_HTTP_DEADLINE=1s)", "1s", true),
        ("no shedding (PP_HTTP_DEADLINE=10m)", "10m", false),
    ] {
        let result = measure(
            &api_binary,
            via(db.url(), proxy.addr()).expose(),
            deadline,
            &script,
            connections,
            seconds,
        )
        .await?;
        println!(
            "{label:<34} {:>8} {:>8} {:>6} {:>8} {:>8} {:>8} {:>7} {:>14}",
            result.get("ok"),
            result.get("busy"),
            result.get("other"),
            result.get("p50_ms"),
            result.get("p99_ms"),
            result.get("max_ms"),
            result.get("rps"),
            format!(
                "{}c {}r {}t",
                result.get("connect"),
                result.get("read"),
                result.get("timeout")
            )
        );
        if is_shedding && (result.number("other") > 0 || result.number("timeout") > 0) {
            healthy = false;
        }
    }
    let _ = std::fs::remove_file(&script);
    if !healthy {
        println!(
            "FAILED: with shedding, an answer was neither 200 nor 503, or a request timed out"
        );
    }
    Ok(healthy)
}

/// wrk's RESULT line, as key=value pairs.
struct WrkResult(Vec<(String, String)>);

impl WrkResult {
    fn get(&self, key: &str) -> String {
        self.0
            .iter()
            .find(|(name, _)| name == key)
            .map_or_else(|| "?".to_owned(), |(_, value)| value.clone())
    }

    fn number(&self, key: &str) -> u64 {
        self.get(key).parse().unwrap_or(0)
    }
}

async fn measure(
    api_binary: &PathBuf,
    database_url: &str,
    deadline: &str,
    script: &Path,
    connections: u64,
    seconds: u64,
) -> anyhow::Result<WrkResult> {
    let reservation = pp_lib::testkit::ports::reserve_port();
    let port = reservation.port();
    let mut api = tokio::process::Command::new(api_binary)
        .env("DATABASE_URL", database_url)
        .env("PP_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("PP_HTTP_DEADLINE", deadline)
        .env("PP_DB_POOL_SIZE", "8")
        .env("PP_DB_STATEMENT_TIMEOUT", "10s")
        .env("PP_OUTBOX_RELAY", "off")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting the API")?;
    let health = format!("http://127.0.0.1:{port}/healthz");
    within(API_START_LIMIT, async || reqwest::get(&health).await)
        .await
        .map_err(|seen| {
            anyhow::anyhow!("the API did not answer within {API_START_LIMIT:?}: {seen:?}")
        })?;
    let output = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--timeout",
            "30s",
            "-s",
        ])
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}/"))
        .stdin(Stdio::null())
        .output()
        .await
        .context("running wrk (make bench-overload installs it)")?;
    let _ = api.kill().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("RESULT "))
        .with_context(|| {
            format!(
                "wrk printed no result: {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
    Ok(WrkResult(
        line.split_whitespace()
            .skip(1)
            .filter_map(|pair| pair.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
    ))
}
