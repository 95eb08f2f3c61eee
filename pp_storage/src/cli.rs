//! `pp_storage`'s command line, as a library type so its tests can feed it every flag.

use std::time::Duration;

use clap::{Parser, Subcommand};
use pp_lib::config::{AmqpConfig, DatabaseConfig, RedisConfig, duration_setting};

use crate::services::ServiceKind;

/// Creates, migrates, inspects, verifies and resets pp's PostgreSQL database.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if it is missing, then apply every pending migration.
    ///
    /// Example: pp_storage migrate
    Migrate,
    /// List every migration and whether (and when) this database has it.
    ///
    /// Example: pp_storage status
    Status,
    /// Check every work: a done work has its sum as result and exactly its three events (start,
    /// stop, result with that sum, under its code); a pending one has none and came over HTTP.
    /// Prints the totals and the first wrong works; exits 3 when one is wrong.
    ///
    /// Example: pp_storage verify
    Verify,
    /// Revert every migration and apply them again: ALL DATA IS DELETED.
    ///
    /// Example: pp_storage reset --yes
    Reset {
        /// Confirm that every row in the database may be deleted.
        #[arg(long)]
        yes: bool,
    },
    /// Show where PostgreSQL, RabbitMQ and Redis are (read as every pp binary reads them, URLs
    /// redacted) and whether each answers on TCP: one line per service, `SERVICE HOST PORT
    /// local|remote|socket answers|silent|unchecked URL`. Exits 3 when one is silent. Without
    /// REDIS_URL, the local Redis the tests use is checked.
    ///
    /// Example: pp_storage check --wait 60s rabbitmq
    Check {
        /// Only these services [default: all three].
        #[arg(value_enum)]
        services: Vec<ServiceKind>,
        /// Probe the silent ones again each second for this long (e.g. 60s) [default: once].
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration_setting)]
        wait: Duration,
        #[command(flatten)]
        amqp: AmqpConfig,
        #[command(flatten)]
        redis: RedisConfig,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
