//! Typed settings, shared by every binary.
//!
//! Each group is a `clap::Args` struct that a binary flattens into its own command line, so a value
//! comes from the flag, else from the environment variable, else from a `.env` file (see
//! [`load_dotenv`]), else from the named default below. The defaults work on a machine prepared by
//! `make setup`. Values that may hold a password are [`SecretUrl`]s: they print redacted, and
//! `--help` never shows their environment value.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, redact_secrets};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/personalproject";
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_QUEUE: &str = "pp_work_queue";
/// The local Redis that `make setup` starts and the tests use. The binaries use Redis only when
/// `REDIS_URL` is set.
pub const DEFAULT_LOCAL_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:3000";
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:3000";
pub const DEFAULT_DB_CONNECT_TIMEOUT: &str = "5s";
pub const DEFAULT_DB_STATEMENT_TIMEOUT: &str = "30s";

/// Reads `.env` from the working directory when there is one. Variables already set win.
pub fn load_dotenv() -> Result<(), Error> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(error) if error.not_found() => Ok(()),
        Err(error) => Err(Error::Config(format!(
            "cannot read .env: {}",
            redact_secrets(&error.to_string())
        ))),
    }
}

/// A connection URL that may carry a password. `Display` and `Debug` show it redacted; only
/// [`SecretUrl::expose`] gives the real text, for the one call that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL as given, password included: pass it to a client library, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The same URL with the path (the database name, for PostgreSQL) replaced.
    pub fn with_path(&self, path: &str) -> SecretUrl {
        let (base, query) = match self.0.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (self.0.as_str(), None),
        };
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        let path_start = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        let mut url = format!("{}/{}", &base[..path_start], path.trim_start_matches('/'));
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        SecretUrl(url)
    }

    /// The scheme, before `://` (`postgres`, `amqp`, `redis`, …).
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("", |(scheme, _)| scheme)
    }

    /// The host and port the URL points at: `[v6]` brackets taken off, an empty host meaning
    /// the local machine (`127.0.0.1`), a missing port meaning `default_port`. The reason it
    /// gives when the port is not one never holds the password.
    pub fn host_and_port(&self, default_port: u16) -> Result<(String, u16), String> {
        let rest = self
            .0
            .split_once("://")
            .map_or(self.0.as_str(), |(_, rest)| rest);
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let host_port = authority
            .rfind('@')
            .map_or(authority, |at| &authority[at + 1..]);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, after)) => (host, after.strip_prefix(':')),
                None => return Err("an IPv6 host lacks its closing `]`".to_owned()),
            },
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let port = match port.filter(|port| !port.is_empty()) {
            None => default_port,
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| format!("the port `{text}` is not a number from 1 to 65535"))?,
        };
        Ok((host.to_owned(), port))
    }

    /// The path of the URL without its leading `/` (for PostgreSQL, the database name).
    pub fn path(&self) -> &str {
        let base = self.0.split(['?', '#']).next().unwrap_or_default();
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        base[authority_start..]
            .find('/')
            .map_or("", |i| &base[authority_start + i + 1..])
    }
}

impl FromStr for SecretUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        match text.split_once("://") {
            Some((scheme, rest))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    && !rest.is_empty() =>
            {
                Ok(SecretUrl(text.to_owned()))
            }
            _ => Err(format!(
                "`{}` is not a URL of the form scheme://[user[:password]@]host[:port][/path]",
                redact_secrets(text)
            )),
        }
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_secrets(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

/// Parses a duration such as `250ms`, `4s`, `2m`, `1h`, `1d` or `1h30m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration: use e.g. 500ms, 4s, 2m, 1h".to_owned());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_len = rest[digits..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len() - digits);
        let (number, unit) = (&rest[..digits], &rest[digits..digits + unit_len]);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("`{text}` is not a duration: use e.g. 500ms, 4s, 2m, 1h"))?;
        let part = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3_600)),
            "d" => Duration::from_secs(number.saturating_mul(86_400)),
            _ => {
                return Err(format!(
                    "`{text}` has an unknown unit `{unit}`: use ms, s, m, h or d"
                ));
            }
        };
        total = total.saturating_add(part);
        rest = &rest[digits + unit_len..];
    }
    Ok(total)
}

/// The longest any duration setting may be: a century. Far beyond any real timeout, window or
/// interval, and short enough that a clock, a timer or a deadline can always add it (a larger
/// one makes `Instant + duration` overflow and panic).
pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(100 * 365 * 86_400);

/// The longest statement timeout PostgreSQL takes: `statement_timeout` is a 32-bit count of
/// milliseconds (about 24.8 days).
pub const MAX_STATEMENT_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

/// The longest connect timeout: a day. libpq takes whole seconds in a 32-bit integer, and no
/// one waits a day for a connection.
pub const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(86_400);

/// A duration setting ([`parse_duration`]'s syntax) from zero to [`MAX_DURATION_SETTING`].
/// Flags use this, never the unbounded parser.
pub fn duration_setting(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::ZERO, MAX_DURATION_SETTING)
}

/// A duration setting that must be more than zero (a period, a timeout): from 1ms to
/// [`MAX_DURATION_SETTING`].
pub fn positive_duration_setting(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), MAX_DURATION_SETTING)
}

/// `text` as a duration from `least` to `most`, or a one-line error that gives the range.
pub fn duration_within(text: &str, least: Duration, most: Duration) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration < least || duration > most {
        return Err(format!(
            "`{}` is out of range: from {} to {}",
            text.trim(),
            format_duration(least),
            format_duration(most)
        ));
    }
    Ok(duration)
}

/// A duration in [`parse_duration`]'s syntax, largest units first (`36500d`, `1h30m`,
/// `250ms`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut text = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= size {
            text.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    text
}

fn parse_connect_timeout(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), MAX_CONNECT_TIMEOUT)
}

fn parse_statement_timeout(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::ZERO, MAX_STATEMENT_TIMEOUT)
}

/// A pool as large as the machine can keep busy: a few connections per core.
pub fn default_pool_size() -> u32 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cores.saturating_mul(4))
        .unwrap_or(u32::MAX)
        .clamp(4, 64)
}

/// PostgreSQL: where it is and how the pool treats it.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL, e.g. postgres://user:password@host:5432/database.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        hide_env_values = true
    )]
    pub url: SecretUrl,
    /// Most connections the pool opens (default: four per core, at least 4).
    #[arg(long = "db-pool-size", env = "PP_DB_POOL_SIZE", default_value_t = default_pool_size(),
          value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub pool_size: u32,
    /// How long to wait for a connection, new or pooled, before failing (e.g. 5s, 500ms).
    #[arg(
        long = "db-connect-timeout",
        env = "PP_DB_CONNECT_TIMEOUT",
        default_value = DEFAULT_DB_CONNECT_TIMEOUT,
        value_parser = parse_connect_timeout
    )]
    pub connect_timeout: Duration,
    /// Longest a single SQL statement may run before PostgreSQL cancels it (0 = no limit; at
    /// most 24d20h31m23s647ms, PostgreSQL's own limit).
    #[arg(
        long = "db-statement-timeout",
        env = "PP_DB_STATEMENT_TIMEOUT",
        default_value = DEFAULT_DB_STATEMENT_TIMEOUT,
        value_parser = parse_statement_timeout
    )]
    pub statement_timeout: Duration,
}

impl DatabaseConfig {
    /// Settings for `url` with every other value at its default.
    pub fn for_url(url: SecretUrl) -> Self {
        DatabaseConfig {
            url,
            pool_size: default_pool_size(),
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Type of the work queue: classic on one node, quorum for a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueType {
    Classic,
    Quorum,
}

/// RabbitMQ: where it is and which queue carries the work demands.
#[derive(Debug, Clone, clap::Args)]
pub struct AmqpConfig {
    /// RabbitMQ URL, e.g. amqp://user:password@host:5672/%2f.
    #[arg(
        id = "amqp_url",
        long = "amqp-url",
        env = "AMQP_URL",
        default_value = DEFAULT_AMQP_URL,
        hide_env_values = true
    )]
    pub url: SecretUrl,
    /// Name of the work queue; its dead-letter queue is this name with `.dlq` appended.
    #[arg(long = "queue", env = "PP_QUEUE", default_value = DEFAULT_QUEUE)]
    pub queue: String,
    /// Queue type: classic (one node) or quorum (replicated, for clusters).
    #[arg(long = "queue-type", env = "PP_QUEUE_TYPE", value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,
}

/// Redis: optional; without it there is no cache and no rate limit.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis URL, e.g. redis://127.0.0.1:6379/0 (unset: no cache, no rate limit).
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "REDIS_URL",
        hide_env_values = true
    )]
    pub url: Option<SecretUrl>,
    /// Text every Redis key starts with, so deployments (or tests) can share one Redis.
    #[arg(long = "redis-prefix", env = "PP_REDIS_PREFIX", default_value = DEFAULT_REDIS_PREFIX, value_parser = parse_redis_prefix)]
    pub prefix: String,
    /// Longest wait for one Redis call; past it the request is answered without Redis.
    #[arg(long = "redis-timeout", env = "PP_REDIS_TIMEOUT", default_value = DEFAULT_REDIS_TIMEOUT, value_parser = parse_redis_timeout)]
    pub timeout: Duration,
    /// After repeated Redis failures, how long to answer without trying it before probing again.
    #[arg(long = "redis-breaker-pause", env = "PP_REDIS_BREAKER_PAUSE", default_value = DEFAULT_REDIS_BREAKER_PAUSE, value_parser = parse_breaker_pause)]
    pub breaker_pause: Duration,
}

impl Default for RedisConfig {
    /// No Redis; the other values at their defaults.
    fn default() -> Self {
        RedisConfig {
            url: None,
            prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            timeout: Duration::from_millis(50),
            breaker_pause: Duration::from_secs(5),
        }
    }
}

/// How long cached works live (used only with Redis).
#[derive(Debug, Clone, clap::Args)]
pub struct CacheConfig {
    /// Time to live of a done work in Redis (a done work never changes).
    #[arg(long = "cache-ttl", env = "PP_CACHE_TTL", default_value = DEFAULT_CACHE_TTL, value_parser = parse_cache_ttl)]
    pub ttl: Duration,
    /// Time to live of a pending work: the longest a cached work can be stale if Redis misses
    /// the update that finishes it.
    #[arg(long = "cache-pending-ttl", env = "PP_CACHE_PENDING_TTL", default_value = DEFAULT_CACHE_PENDING_TTL, value_parser = parse_cache_ttl)]
    pub pending_ttl: Duration,
    /// Done works each process also keeps in memory: the ones read last (up to twice as many
    /// are held while older ones age out; 0: none).
    #[arg(long = "cache-memory-works", env = "PP_CACHE_MEMORY_WORKS", default_value_t = DEFAULT_CACHE_MEMORY_WORKS, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub memory_works: u32,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(3_600),
            pending_ttl: Duration::from_secs(2),
            memory_works: DEFAULT_CACHE_MEMORY_WORKS,
        }
    }
}

impl CacheConfig {
    /// The work cache's settings.
    #[cfg(feature = "cache")]
    pub fn work_cache_settings(&self) -> crate::cache::WorkCacheSettings {
        crate::cache::WorkCacheSettings {
            ttl: self.ttl,
            pending_ttl: self.pending_ttl,
            local_capacity: self.memory_works as usize,
        }
    }
}

pub const DEFAULT_REDIS_PREFIX: &str = "pp";
pub const DEFAULT_REDIS_TIMEOUT: &str = "50ms";
pub const DEFAULT_REDIS_BREAKER_PAUSE: &str = "5s";
pub const DEFAULT_CACHE_TTL: &str = "1h";
pub const DEFAULT_CACHE_PENDING_TTL: &str = "2s";
pub const DEFAULT_CACHE_MEMORY_WORKS: u32 = 10_000;

fn parse_redis_prefix(text: &str) -> Result<String, String> {
    if text.is_empty() || text.len() > 64 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 64 printable ASCII characters without spaces".to_owned());
    }
    Ok(text.to_owned())
}

fn parse_redis_timeout(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), Duration::from_secs(60))
}

fn parse_breaker_pause(text: &str) -> Result<Duration, String> {
    duration_within(text, Duration::from_millis(1), Duration::from_secs(3_600))
}

fn parse_cache_ttl(text: &str) -> Result<Duration, String> {
    duration_within(
        text,
        Duration::from_millis(1),
        Duration::from_secs(30 * 86_400),
    )
}

/// Requests per unit of time, e.g. `50/s`, `3000/m`, `10/h`, `1000/d`, or a bare number (per
/// second). From one a day to a million a second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_second: f64,
    text_count: f64,
    unit: char,
}

impl Rate {
    pub const MIN_PER_SECOND: f64 = 1.0 / 86_400.0;
    pub const MAX_PER_SECOND: f64 = 1_000_000.0;

    pub fn per_second(&self) -> f64 {
        self.per_second
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let usage = "use e.g. 50/s, 3000/m, 10/h or 1000/d";
        let (count, unit) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
        let seconds = match unit {
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3_600.0,
            "d" => 86_400.0,
            _ => return Err(format!("`{text}` has an unknown unit `{unit}`: {usage}")),
        };
        let count: f64 = count
            .parse()
            .map_err(|_| format!("`{text}` is not a rate: {usage}"))?;
        let per_second = count / seconds;
        if !per_second.is_finite()
            || !(Self::MIN_PER_SECOND..=Self::MAX_PER_SECOND).contains(&per_second)
        {
            return Err(format!(
                "`{text}` is out of range: from 1/d to {}/s",
                Self::MAX_PER_SECOND
            ));
        }
        Ok(Rate {
            per_second,
            text_count: count,
            unit: unit.chars().next().unwrap_or('s'),
        })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.text_count, self.unit)
    }
}

/// The API server's listening address.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Address the API listens on (port 0 picks a free one).
    #[arg(id = "http_addr", long = "http-addr", env = "PP_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub addr: SocketAddr,
}

/// Where clients find the API.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiClientConfig {
    /// Base URL of the pp API.
    #[arg(id = "api_url", long = "api-url", env = "PP_API_URL", default_value = DEFAULT_API_URL)]
    pub url: String,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        database: DatabaseConfig,
        #[command(flatten)]
        amqp: AmqpConfig,
        #[command(flatten)]
        redis: RedisConfig,
        #[command(flatten)]
        http: HttpConfig,
        #[command(flatten)]
        api: ApiClientConfig,
    }

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "pp",
            "--database-url",
            "postgres://u:pw@db:5433/other",
            "--db-pool-size",
            "3",
            "--db-connect-timeout",
            "750ms",
            "--queue",
            "q1",
            "--queue-type",
            "quorum",
            "--http-addr",
            "0.0.0.0:8080",
        ])
        .expect("valid flags parse");
        assert_eq!(cli.database.url.expose(), "postgres://u:pw@db:5433/other");
        assert_eq!(cli.database.pool_size, 3);
        assert_eq!(cli.database.connect_timeout, Duration::from_millis(750));
        assert_eq!(cli.amqp.queue, "q1");
        assert_eq!(cli.amqp.queue_type, QueueType::Quorum);
        assert_eq!(cli.http.addr.port(), 8080);
    }

    #[test]
    fn bad_values_are_rejected_with_the_reason() {
        let error = Cli::try_parse_from(["pp", "--db-connect-timeout", "5 parsecs"])
            .expect_err("a bad duration is refused");
        assert!(error.to_string().contains("unknown unit"), "{error}");
        let error = Cli::try_parse_from(["pp", "--database-url", "postgres:/x:secret@h"])
            .expect_err("a bad URL is refused");
        assert!(error.to_string().contains("not a URL"), "{error}");
    }

    #[test]
    fn secret_urls_print_redacted() {
        let url: SecretUrl = "postgres://pp:secret@db/pp".parse().expect("a valid URL");
        assert_eq!(url.to_string(), "postgres://pp:***@db/pp");
        assert_eq!(format!("{url:?}"), "SecretUrl(postgres://pp:***@db/pp)");
        assert_eq!(url.expose(), "postgres://pp:secret@db/pp");
    }

    #[test]
    fn database_name_can_be_read_and_replaced() {
        let url: SecretUrl = "postgres://u:p@h:5432/pp?sslmode=disable"
            .parse()
            .expect("a valid URL");
        assert_eq!(url.path(), "pp");
        let other = url.with_path("postgres");
        assert_eq!(
            other.expose(),
            "postgres://u:p@h:5432/postgres?sslmode=disable"
        );
        let bare: SecretUrl = "postgres://h".parse().expect("a valid URL");
        assert_eq!(bare.path(), "");
        assert_eq!(bare.with_path("x").expose(), "postgres://h/x");
    }

    #[test]
    fn hosts_and_ports_are_read_from_urls() {
        let cases = [
            ("postgres://u:p@ss@db:5433/pp", 5432, Ok(("db", 5433))),
            (
                "amqp://guest:guest@127.0.0.1/%2f",
                5672,
                Ok(("127.0.0.1", 5672)),
            ),
            ("redis://[::1]:6380/0", 6379, Ok(("::1", 6380))),
            ("redis://[::1]", 6379, Ok(("::1", 6379))),
            ("redis://:pw@/0", 6379, Ok(("127.0.0.1", 6379))),
            ("postgres://h:/pp", 5432, Ok(("h", 5432))),
            ("postgres://h:0/pp", 5432, Err("`0`")),
            ("postgres://u:secret@h:x/pp", 5432, Err("`x`")),
            ("redis://[::1:6379", 6379, Err("`]`")),
        ];
        for (text, default_port, expected) in cases {
            let url: SecretUrl = text.parse().expect("a URL");
            match (url.host_and_port(default_port), expected) {
                (Ok((host, port)), Ok((want_host, want_port))) => {
                    assert_eq!((host.as_str(), port), (want_host, want_port), "{text}");
                }
                (Err(reason), Err(part)) => {
                    assert!(reason.contains(part), "{text}: {reason}");
                    assert!(!reason.contains("secret"), "{text}: {reason}");
                }
                (found, _) => panic!("{text}: {found:?}"),
            }
        }
        assert_eq!(
            "amqps://h"
                .parse::<SecretUrl>()
                .map(|url| url.scheme().to_owned()),
            Ok("amqps".to_owned())
        );
    }

    #[test]
    fn durations_parse() {
        let cases = [
            ("4", Duration::from_secs(4)),
            ("4s", Duration::from_secs(4)),
            ("250ms", Duration::from_millis(250)),
            ("2m", Duration::from_secs(120)),
            ("1h", Duration::from_secs(3_600)),
            ("1h30m", Duration::from_secs(5_400)),
            ("1d", Duration::from_secs(86_400)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "parsing {text:?}");
        }
        for bad in ["", "s", "4x", "-1s", "1.5s", "ms4"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn duration_settings_refuse_what_no_clock_or_server_takes() {
        assert_eq!(duration_setting("36500d"), Ok(MAX_DURATION_SETTING));
        let refused = duration_setting("999999999d").expect_err("beyond a century");
        assert_eq!(refused, "`999999999d` is out of range: from 0s to 36500d");
        assert!(positive_duration_setting("0").is_err());
        assert_eq!(
            parse_statement_timeout("24d"),
            Ok(Duration::from_secs(24 * 86_400))
        );
        assert_eq!(
            parse_statement_timeout("25d"),
            Err("`25d` is out of range: from 0s to 24d20h31m23s647ms".to_owned())
        );
        assert!(parse_connect_timeout("0").is_err());
        assert_eq!(
            format_duration(Duration::from_millis(5_400_250)),
            "1h30m250ms"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_duration_setting_taken_is_one_a_clock_can_add(
            text in "[0-9]{1,25}(ms|s|m|h|d)?([0-9]{1,25}(ms|s|m|h|d))?|.{0,12}",
        ) {
            if let Ok(duration) = duration_setting(&text) {
                proptest::prop_assert!(duration <= MAX_DURATION_SETTING);
                // What the programs do with it: a deadline from now.
                proptest::prop_assert!(std::time::Instant::now().checked_add(duration).is_some());
            }
            if let Ok(duration) = parse_statement_timeout(&text) {
                proptest::prop_assert!(duration.as_millis() <= i32::MAX as u128);
            }
        }

        #[test]
        fn any_rate_taken_paces_messages_a_clock_can_schedule(
            text in "-?[0-9]{0,20}(\\.[0-9]{0,10})?(e-?[0-9]{1,3})?(/[smhdx])?|.{0,10}",
        ) {
            if let Ok(rate) = text.parse::<Rate>() {
                let per_second = rate.per_second();
                proptest::prop_assert!(per_second.is_finite());
                proptest::prop_assert!((Rate::MIN_PER_SECOND..=Rate::MAX_PER_SECOND).contains(&per_second));
                proptest::prop_assert!(Duration::try_from_secs_f64(1.0 / per_second).is_ok());
            }
        }
    }
}
