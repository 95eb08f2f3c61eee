//! `pp_storage`'s command line, as a library type so its tests can feed it every flag.

use std::time::Duration;

use clap::{Parser, Subcommand};
use pp_lib::auth::{Role, Scopes, check_name};
use pp_lib::config::{
    AmqpConfig, DatabaseConfig, RedisConfig, duration_setting, positive_duration_setting,
};

use crate::services::ServiceKind;

/// Creates, migrates, inspects, verifies and resets pp's PostgreSQL database, and manages who
/// may use pp: API keys, dashboard accounts, the audit trail.
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
    /// Manage the API keys: create one (its token is printed once, on the last line), list them
    /// (never a secret), revoke one.
    ///
    /// Example: pp_storage keys create --name ci --scopes read,write --expires 90d
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage the dashboard's accounts: add one (the password is asked for at a terminal, or read
    /// as one line from stdin), list, remove, change a password (which logs the account out).
    ///
    /// Example: pp_storage users add ada --role operator
    #[command(subcommand)]
    Users(UsersCommand),
    /// Show the audit trail, newest first: every dashboard action, key and account change and
    /// failed login — when, who, what, on what, from where, and how it ended.
    ///
    /// Example: pp_storage audit --since 7d --limit 20
    Audit {
        /// Events of this long ago at most (e.g. 24h, 30d).
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = duration_setting)]
        since: Duration,
        /// Most events shown.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
        limit: i64,
    },
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

/// `pp_storage keys …`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key; its token is printed once, on the last line of the output.
    ///
    /// Example: pp_storage keys create --name ci --scopes read,write --expires 90d
    Create {
        /// The key's name: 1 to 64 letters, digits, `.`, `_`, `@` or `-`.
        #[arg(long, value_parser = parse_name)]
        name: String,
        /// What it may do: read, write, operate, comma-separated.
        #[arg(long)]
        scopes: Scopes,
        /// How long it lasts (e.g. 90d) [default: until revoked].
        #[arg(long, value_name = "DURATION", value_parser = positive_duration_setting)]
        expires: Option<Duration>,
    },
    /// List the keys: name, scopes, when made, when it expires, last used, state.
    List,
    /// Revoke a key: it authenticates no one from now on (the API notices within seconds).
    Revoke {
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

/// `pp_storage users …`.
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add an account (its password is asked for, or read from stdin).
    ///
    /// Example: echo 'a long passphrase' | pp_storage users add ada --role viewer
    Add {
        #[arg(value_parser = parse_name)]
        name: String,
        /// viewer (sees everything) or operator (also acts).
        #[arg(long, value_enum)]
        role: Role,
    },
    /// List the accounts: name, role, when added, when the password last changed.
    List,
    /// Remove an account; its sessions end with it.
    Remove {
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Change an account's password (asked for, or read from stdin); its sessions end.
    Passwd {
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

fn parse_name(text: &str) -> Result<String, String> {
    check_name(text).map(str::to_owned)
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
