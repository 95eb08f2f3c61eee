//! The command line: flags, subcommands and their checks.
//!
//! Every value is checked by a clap value parser (ids, `--since`, `--limit`, `--add-up-to`,
//! `--timeout`, `--api-url`), so bad usage exits 2 with clap's message before anything is asked,
//! and both ways of asking get the same, valid, query.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::Shell;
use pp_lib::config::{ApiClientConfig, DatabaseConfig, SweepWindow, parse_duration};
use pp_lib::contract::search::{DEFAULT_SEARCH_WINDOW, SearchQuery};
use pp_lib::db::works::{SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT};

use crate::backend::{Target, Via};
use crate::error::EXIT_STATUS;
use crate::output::OutputFormat;

/// How long an HTTP call may take by default, connecting included.
pub const DEFAULT_TIMEOUT: &str = "10s";

const ABOUT: &str = "Queries and drives pp over its HTTP API or straight from PostgreSQL";

const LONG_ABOUT: &str = "\
Queries and drives pp over its HTTP API or straight from PostgreSQL.

Every command gives the same answer whichever way it asks (--via http, the default, or --via \
db). The answer is a table on a terminal and JSON otherwise (one document per line, ready for \
jq); --output chooses. Errors are one line on stderr, `cli_01: error: ...`, with an exit code \
per kind of failure.";

const EXAMPLES: &str = "\
Examples:
  cli_01 get 7                              a work, as GET /work/7 answers it
  cli_01 search api- --since 6h --done true the API's works done in the last six hours
  cli_01 --via db stats                     counts, straight from PostgreSQL
  cli_01 create --add-up-to 4 --output json a new work, as JSON
  cli_01 get 7 | jq .result                 JSON when stdout is not a terminal
  PP_API_URL=http://10.0.0.5:3000 cli_01 events 7";

/// Queries and drives pp over its HTTP API or straight from PostgreSQL.
#[derive(Debug, Parser)]
#[command(
    name = "cli_01",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = format!("{EXAMPLES}\n\n{EXIT_STATUS}"),
    // The shared settings are flattened from pp_lib; here they are adjusted for a client: usable
    // after the subcommand too, the API URL checked (and its environment value never shown, as
    // it may carry a password), and the pool size, meaningless for one connection, hidden.
    mut_arg("api_url", |arg| arg
        .global(true)
        .value_name("URL")
        .hide_env_values(true)
        .value_parser(parse_api_url)
        .help("Base URL of the pp API (--via http), e.g. http://127.0.0.1:3000")),
    mut_arg("api_key", |arg| arg.global(true)),
    mut_arg("database_url", |arg| arg
        .global(true)
        .value_name("URL")
        .help("PostgreSQL URL (--via db), e.g. postgres://user:password@host:5432/database")),
    mut_arg("connect_timeout", |arg| arg.global(true).value_name("DURATION")),
    mut_arg("statement_timeout", |arg| arg.global(true).value_name("DURATION")),
    mut_arg("pool_size", |arg| arg.hide(true)),
    mut_arg("sweep_window", |arg| arg
        .global(true)
        .value_name("DURATION")
        .help("The sweeper's window (--via db; the API uses its own): `stats` counts the API \
               works created before it, which the sweeper will never finish")),
)]
pub struct Cli {
    /// Where the answers come from: the API over HTTP, or PostgreSQL directly (with the
    /// API's own queries).
    #[arg(long, value_enum, default_value_t = Via::Http, global = true)]
    pub via: Via,

    #[command(flatten)]
    pub api: ApiClientConfig,

    #[command(flatten)]
    pub database: DatabaseConfig,

    /// How to print the answer [default: table on a terminal, json otherwise].
    #[arg(long, value_enum, global = true)]
    pub output: Option<OutputFormat>,

    /// Longest an HTTP call may take, connecting included, e.g. 500ms, 10s, 1m.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = DEFAULT_TIMEOUT,
        value_parser = parse_timeout,
        global = true
    )]
    pub timeout: Duration,

    #[command(flatten)]
    pub sweep_window: SweepWindow,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Query(Query),

    /// Print a completion script for a shell.
    #[command(after_help = "\
Examples:
  cli_01 completions bash > ~/.local/share/bash-completion/completions/cli_01
  cli_01 completions zsh > ~/.zfunc/_cli_01
  cli_01 completions fish > ~/.config/fish/completions/cli_01.fish")]
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// The commands that ask pp something, over HTTP or from the database.
#[derive(Debug, Subcommand)]
pub enum Query {
    /// Show one work.
    #[command(after_help = "\
Examples:
  cli_01 get 7                  GET /work/7
  cli_01 get 7 --via db         the same work, read from PostgreSQL
  cli_01 get 7 --output json    exactly the API's body")]
    Get {
        /// The work's id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },

    /// Find works whose code starts with a prefix, created within a window, in id order.
    #[command(after_help = "\
Examples:
  cli_01 search api-                       works created over HTTP in the last hour
  cli_01 search consumer- --since 1d       works created from queued demands today
  cli_01 search api- --done false --limit 5
  cli_01 search '' --since 30m --via db    every work of the last half hour")]
    Search(SearchArgs),

    /// Create a work (POST /work; with --via db, insert it directly).
    #[command(after_help = "\
Examples:
  cli_01 create                  add_up_to drawn at random in 1..100
  cli_01 create --add-up-to 4    a work that adds up 1..=4")]
    Create {
        /// Add up 1..=N [default: random in 1..100].
        #[arg(
            long,
            value_name = "N",
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(i32).range(0..)
        )]
        add_up_to: Option<i32>,
    },

    /// Enqueue a work demand for the consumer (POST /work/demand, answered 202 with its
    /// message id; with --via db, commit it to the demand outbox directly).
    #[command(after_help = "\
Examples:
  cli_01 demand                  add_up_to drawn at random in 1..100
  cli_01 demand --add-up-to 2    the original's {\"add_up_to\": 2, \"done\": false}")]
    Demand {
        /// Add up 1..=N [default: random in 1..100].
        #[arg(
            long,
            value_name = "N",
            allow_negative_numbers = true,
            value_parser = clap::value_parser!(i32).range(0..)
        )]
        add_up_to: Option<i32>,
    },

    /// Follow a demand to its work: the work once a consumer has recorded it, else where the
    /// demand is (`outbox`: waiting for the relay; `published`: waiting for a consumer).
    #[command(after_help = "\
Examples:
  cli_01 follow 67e55044-10b1-426f-9247-bb680e5fe0c8             GET /work/demand/{message_id}
  cli_01 demand --output json | jq -r .message_id | xargs cli_01 follow
  cli_01 follow 67e55044-10b1-426f-9247-bb680e5fe0c8 --via db    the same, from PostgreSQL
  cli_01 follow 67e55044-10b1-426f-9247-bb680e5fe0c8 --wait 30s  the work as soon as it is recorded")]
    Follow {
        /// The demand's message id, as `cli_01 demand` printed it.
        #[arg(value_parser = parse_message_id)]
        message_id: uuid::Uuid,
        /// Wait up to this long for the work to be recorded (`Prefer: wait` over HTTP, where the
        /// API caps it; PostgreSQL's announcements from the database), then show what is there.
        #[arg(long, value_name = "DURATION", value_parser = parse_wait)]
        wait: Option<Duration>,
    },

    /// List a work's events, oldest first (none while it is pending).
    #[command(after_help = "\
Examples:
  cli_01 events 7                     GET /work/7/events
  cli_01 events 7 --output json | jq -r '.[] | select(.variable == \"compute/result\") | .value'")]
    Events {
        /// The work's id.
        #[arg(value_parser = clap::value_parser!(i64).range(1..))]
        id: i64,
    },

    /// Count pending and done works and events, and the works done in the last hour.
    #[command(after_help = "\
Examples:
  cli_01 stats                  GET /stats
  cli_01 stats --via db         the same counts, by the same statement, from PostgreSQL")]
    Stats,
}

/// What `search` looks for.
#[derive(Debug, Clone, Args)]
pub struct SearchArgs {
    /// Works whose code starts with this text, taken literally (`%` and `_` match themselves).
    #[arg(value_parser = parse_prefix)]
    pub prefix: String,

    /// How far back to look, e.g. 30m, 6h, 1d.
    #[arg(long, value_name = "DURATION", default_value = DEFAULT_SEARCH_WINDOW, value_parser = parse_since)]
    pub since: Duration,

    /// Only done (true) or only pending (false) works [default: both].
    #[arg(long, value_name = "true|false", value_parser = clap::value_parser!(bool))]
    pub done: Option<bool>,

    /// Most works returned, 1 to 1000.
    #[arg(
        long,
        value_name = "N",
        default_value_t = SEARCH_DEFAULT_LIMIT,
        value_parser = clap::value_parser!(i64).range(1..=SEARCH_MAX_LIMIT)
    )]
    pub limit: i64,
}

impl SearchArgs {
    /// The search, as both backends run it (first page).
    pub fn query(&self) -> SearchQuery {
        SearchQuery {
            prefix: self.prefix.clone(),
            since: self.since,
            done: self.done,
            limit: self.limit,
            after_id: None,
        }
    }
}

impl Cli {
    /// Where `--via` will ask: the API's URL and timeout, the database's settings.
    pub fn target(&self) -> Target<'_> {
        Target {
            api_url: &self.api.url,
            api_key: self.api.key.as_ref(),
            timeout: self.timeout,
            database: &self.database,
            sweep_window: self.sweep_window.duration,
        }
    }
}

/// A positive duration, in `pp_lib`'s syntax.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    pp_lib::config::positive_duration_setting(text)
}

/// A search window: a duration that a timestamp can be moved back by.
fn parse_since(text: &str) -> Result<Duration, String> {
    let since = parse_duration(text)?;
    chrono::Duration::from_std(since)
        .map_err(|_| format!("`{text}` is too long a window: use e.g. 1h, 7d, 3650d"))?;
    Ok(since)
}

/// How long `follow` may wait: whole seconds up to an hour (the API caps its own).
fn parse_wait(text: &str) -> Result<Duration, String> {
    let wait = parse_duration(text)?;
    if wait > Duration::from_secs(3_600) {
        return Err(format!("`{text}` is too long a wait: an hour at most"));
    }
    Ok(wait)
}

/// A demand's message id: a UUID, as the API reads one.
fn parse_message_id(text: &str) -> Result<uuid::Uuid, String> {
    pp_lib::contract::parse_message_id(text).map_err(|error| error.to_string())
}

/// A code prefix: any text PostgreSQL can hold, which excludes NUL.
fn parse_prefix(text: &str) -> Result<String, String> {
    if text.contains('\0') {
        return Err("the prefix cannot contain a NUL character".to_owned());
    }
    Ok(text.to_owned())
}

/// The API's base URL: `http://host[:port][/path]`, without a trailing slash. (This build speaks
/// plain HTTP only: the API serves it, on loopback or behind a proxy that terminates TLS.)
fn parse_api_url(text: &str) -> Result<String, String> {
    use pp_lib::error::redact_secrets;
    let plain_http_only = || {
        format!(
            "`{}` must start with http:// (cli_01 speaks plain HTTP)",
            redact_secrets(text)
        )
    };
    if !text.contains("://") {
        return Err(plain_http_only());
    }
    let url = reqwest::Url::parse(text.trim())
        .map_err(|error| format!("`{}` is not a URL: {error}", redact_secrets(text)))?;
    if url.scheme() != "http" {
        return Err(plain_http_only());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{}` has no host", redact_secrets(text)));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{}` must not have a query or a fragment",
            redact_secrets(text)
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cli_01").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        for args in [
            &["--via", "db", "--output", "json", "get", "7"][..],
            &["get", "7", "--via", "db", "--output", "json"],
            &["get", "--via", "db", "7", "--output", "json"],
        ] {
            let cli = parse(args).unwrap_or_else(|error| panic!("{args:?}: {error}"));
            assert_eq!(cli.via, Via::Db, "{args:?}");
            assert_eq!(cli.output, Some(OutputFormat::Json), "{args:?}");
            assert!(
                matches!(cli.command, Command::Query(Query::Get { id: 7 })),
                "{args:?}"
            );
        }
        let cli = parse(&["stats", "--api-url", "http://h:9/pp/", "--timeout", "2s"])
            .expect("flags after the subcommand");
        assert_eq!(cli.api.url, "http://h:9/pp");
        assert_eq!(cli.timeout, Duration::from_secs(2));
    }

    #[test]
    fn search_has_the_apis_defaults() {
        let cli = parse(&["search", "api-"]).expect("a search");
        let Command::Query(Query::Search(search)) = cli.command else {
            panic!("a search: {:?}", cli.command);
        };
        assert_eq!(search.prefix, "api-");
        assert_eq!(search.since, Duration::from_secs(3_600));
        assert_eq!(search.done, None);
        assert_eq!(search.limit, 100);
        assert_eq!(cli.via, Via::Http);
        assert_eq!(cli.timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let cases: [&[&str]; 14] = [
            &["get", "abc"],
            &["get", "0"],
            &["get", "-1"],
            &["get"],
            &[],
            &["search", "api-", "--since", "soon"],
            &["search", "api-", "--since", "99999999999999d"],
            &["search", "api-", "--done", "yes"],
            &["search", "api-", "--limit", "0"],
            &["search", "api-", "--limit", "1001"],
            &["search", "a\0b"],
            &["create", "--add-up-to", "-3"],
            &["demand", "--add-up-to", "2147483648"],
            &["--via", "carrier-pigeon", "stats"],
        ];
        for args in cases {
            let error = parse(args).expect_err(&format!("{args:?} is refused"));
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn api_urls_are_checked_and_never_echo_a_password() {
        let cases = [
            ("http://127.0.0.1:3000", Ok("http://127.0.0.1:3000")),
            ("http://127.0.0.1:3000/", Ok("http://127.0.0.1:3000")),
            ("http://api.internal/pp/", Ok("http://api.internal/pp")),
            ("https://u:hunter2@h", Err("must start with http://")),
            ("127.0.0.1:3000", Err("must start with http://")),
            ("http://u:hunter2@h/?x=1", Err("must not have a query")),
            ("not a url", Err("must start with http://")),
            ("http://exa mple.com", Err("is not a URL")),
        ];
        for (text, expected) in cases {
            let parsed = parse_api_url(text);
            match expected {
                Ok(url) => assert_eq!(parsed.as_deref(), Ok(url), "{text}"),
                Err(reason) => {
                    let error = parsed.expect_err(text);
                    assert!(error.contains(reason), "{text}: {error}");
                    assert!(!error.contains("hunter2"), "{text}: {error}");
                }
            }
        }
    }

    #[test]
    fn help_shows_examples_and_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        for text in [
            "Examples:",
            "Exit status:",
            "--via <VIA>",
            "--output <OUTPUT>",
        ] {
            assert!(help.contains(text), "{text} in {help}");
        }
        for subcommand in [
            "get", "search", "create", "demand", "follow", "events", "stats",
        ] {
            let mut command = Cli::command();
            let sub = command
                .find_subcommand_mut(subcommand)
                .unwrap_or_else(|| panic!("{subcommand} exists"));
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains(&format!("cli_01 {subcommand}")),
                "an example of {subcommand} in {help}"
            );
        }
    }
}
