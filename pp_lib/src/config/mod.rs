//! Typed settings, shared by every binary, a module per subject.
//!
//! Each group is a `clap::Args` struct that a binary flattens into its own command line, so a value
//! comes from the flag, else from the environment variable, else from a `.env` file (see
//! [`load_dotenv`]), else from the default its flag declares. That declaration is the only place a
//! default is written: a group's `Default` (and every constructor of test or local settings) is
//! built by [`defaults`], which asks clap for the group with no flag and no variable set. The
//! defaults work on a machine prepared by `make setup`. Values that may hold a password are
//! [`SecretUrl`]s: they print redacted, and `--help` never shows their environment value.
//!
//! - [`url`]: [`SecretUrl`], a connection URL whose password never prints.
//! - [`duration`]: durations as settings take them (`500ms`, `4s`, `1h30m`), bounded, and written
//!   back the same way.
//! - [`rate`]: [`Rate`], requests per unit of time.
//! - [`switch`]: on/off settings.
//! - [`database`], [`amqp`], [`redis`], [`http`], [`sweep`]: the groups, one per service or
//!   subject.

pub mod amqp;
pub mod database;
pub mod duration;
pub mod http;
pub mod rate;
pub mod redis;
pub mod sweep;
pub mod switch;
pub mod url;

pub use amqp::{AmqpConfig, AmqpNodes, DEFAULT_AMQP_URL, DEFAULT_QUEUE, QueueType};
pub use database::{DEFAULT_DATABASE_URL, DatabaseConfig, default_pool_size};
pub use duration::{
    MAX_CONNECT_TIMEOUT, MAX_DURATION_SETTING, MAX_STATEMENT_TIMEOUT, duration_setting,
    duration_within, format_duration, parse_duration, positive_duration_setting,
};
pub use http::{ApiClientConfig, DEFAULT_API_URL, DEFAULT_HTTP_ADDR, HttpConfig};
pub use rate::Rate;
pub use redis::{CacheConfig, DEFAULT_LOCAL_REDIS_URL, RedisConfig};
pub use sweep::SweepWindow;
pub use switch::parse_switch;
pub use url::SecretUrl;

use crate::error::{Error, redact_secrets};

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

/// A settings group with every value at the default its flag declares, whatever the environment
/// holds: clap parses the group from an empty command line with its variables ignored. Every
/// group's `Default` is this, so no default is written twice.
pub fn defaults<T: clap::Args + clap::FromArgMatches>() -> T {
    let matches = defaults_command::<T>()
        .try_get_matches_from(["defaults"])
        .unwrap_or_else(|error| panic!("a settings group has a flag without a default: {error}"));
    T::from_arg_matches(&matches)
        .unwrap_or_else(|error| panic!("a settings group's defaults do not parse: {error}"))
}

/// The command [`defaults`] parses: the group's flags, none of them reading a variable.
fn defaults_command<T: clap::Args>() -> clap::Command {
    T::augment_args(clap::Command::new("defaults")).mut_args(|arg| arg.env(None))
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
        #[command(flatten)]
        sweep: SweepWindow,
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
        assert_eq!(
            cli.database.connect_timeout,
            std::time::Duration::from_millis(750)
        );
        assert_eq!(cli.amqp.queue, "q1");
        assert_eq!(cli.amqp.queue_type, QueueType::Quorum);
        assert_eq!(cli.http.addr.port(), 8080);
        assert_eq!(
            cli.sweep.duration,
            std::time::Duration::from_secs(6 * 3_600)
        );
    }

    #[test]
    fn every_groups_defaults_parse_and_read_no_variable() {
        fn check<T: clap::Args + clap::FromArgMatches>() {
            let command = defaults_command::<T>();
            let reading: Vec<_> = command
                .get_arguments()
                .filter(|arg| arg.get_env().is_some())
                .map(|arg| arg.get_id().to_string())
                .collect();
            assert!(reading.is_empty(), "{reading:?} would read the environment");
            let _: T = defaults();
        }
        check::<DatabaseConfig>();
        check::<AmqpConfig>();
        check::<RedisConfig>();
        check::<CacheConfig>();
        check::<HttpConfig>();
        check::<ApiClientConfig>();
        check::<SweepWindow>();
        // The full command line reads them all: the defaults' command is what turned them off.
        use clap::CommandFactory;
        assert!(
            Cli::command()
                .get_arguments()
                .any(|arg| arg.get_env().is_some())
        );
    }

    #[test]
    fn defaults_are_the_flags_whatever_the_environment_says() {
        let window = SweepWindow::default();
        assert_eq!(window.duration, std::time::Duration::from_secs(6 * 3_600));
        let cache = CacheConfig::default();
        assert_eq!(cache.ttl, std::time::Duration::from_secs(3_600));
        assert_eq!(cache.memory_works, 10_000);
        let redis = RedisConfig::default();
        assert_eq!((redis.url, redis.prefix.as_str()), (None, "pp"));
        let database: DatabaseConfig = defaults();
        assert_eq!(database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(
            database.statement_timeout,
            std::time::Duration::from_secs(30)
        );
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
}
