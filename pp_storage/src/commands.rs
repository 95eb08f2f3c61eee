//! What each of `pp_storage`'s commands does, as functions of their settings: the binary parses
//! its command line and calls [`run`].

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use pp_lib::config::{AmqpConfig, DatabaseConfig, RedisConfig};
use pp_lib::db::establish;

use crate::cli::{Cli, Command};
use crate::services::{self, Line, Reachability, ServiceKind};
use crate::{DatabaseCreation, create_database_if_missing, database_name};

/// Exit code of `check` when a service does not answer, and of `verify` when a work is wrong.
pub const EXIT_FOUND: u8 = 3;

/// Wrong works `verify` lists, at most (it counts them all).
const VERIFY_EXAMPLES: usize = 20;

/// Runs the command the command line names.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = &cli.database;
    match cli.command {
        Command::Check {
            services,
            wait,
            amqp,
            redis,
        } => return check(config, &services, wait, &amqp, &redis),
        Command::Verify => return verify(config),
        Command::Keys(command) => crate::identities::keys(&mut connect(config)?, command)?,
        Command::Users(command) => crate::identities::users(&mut connect(config)?, command)?,
        Command::Audit { since, limit } => {
            crate::identities::show_audit(&mut connect(config)?, since, limit)?
        }
        Command::Migrate => migrate(config)?,
        Command::Status => status(config)?,
        Command::Reset { yes } => reset(config, yes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// A connection to the configured database, which must exist and be migrated.
fn connect(config: &DatabaseConfig) -> anyhow::Result<diesel::PgConnection> {
    let name = database_name(&config.url)?;
    establish(&config.url, config.connect_timeout).with_context(|| {
        format!("failed to open database {name} (run `pp_storage migrate` or `make setup` first)")
    })
}

/// One line per service; exit 3 when one is silent.
fn check(
    database: &DatabaseConfig,
    kinds: &[ServiceKind],
    wait: Duration,
    amqp: &AmqpConfig,
    redis: &RedisConfig,
) -> anyhow::Result<ExitCode> {
    let services = services::configured(kinds, &database.url, &amqp.nodes, redis.url.as_ref())?;
    let found = services::check(&services, wait);
    for (service, state) in services.iter().zip(&found) {
        println!("{}", Line(service, *state));
    }
    if found.contains(&Reachability::Silent) {
        return Ok(ExitCode::from(EXIT_FOUND));
    }
    Ok(ExitCode::SUCCESS)
}

fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
    let name = database_name(&config.url)?;
    let creation = create_database_if_missing(&config.url, config.connect_timeout)
        .context("failed to create the database")?;
    if creation == DatabaseCreation::Created {
        println!("created database {name}");
    }
    let mut conn = establish(&config.url, config.connect_timeout)?;
    let applied = crate::run_pending_migrations(&mut conn)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("failed to migrate")?;
    for migration in &applied {
        println!("applied {migration}");
    }
    println!(
        "database {name} is up to date ({} applied now)",
        applied.len()
    );
    Ok(())
}

fn status(config: &DatabaseConfig) -> anyhow::Result<()> {
    let name = database_name(&config.url)?;
    let mut conn = establish(&config.url, config.connect_timeout).with_context(|| {
        format!(
            "failed to open database {name} (run `pp_storage migrate` or `make setup` to create it)"
        )
    })?;
    let states = crate::migration_status(&mut conn)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("failed to read the migration status")?;
    println!("database {name} on {}", config.url);
    let pending = states
        .iter()
        .filter(|state| state.applied_on.is_none())
        .count();
    for state in &states {
        match state.applied_on {
            Some(at) => println!(
                "  applied  {}  ({})",
                state.name,
                at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            None => println!("  pending  {}", state.name),
        }
    }
    println!("{} migrations, {pending} pending", states.len());
    Ok(())
}

fn reset(config: &DatabaseConfig, yes: bool) -> anyhow::Result<()> {
    let name = database_name(&config.url)?;
    if !yes {
        anyhow::bail!(
            "reset deletes every row in database {name}; run `pp_storage reset --yes` to confirm"
        );
    }
    let mut conn = establish(&config.url, config.connect_timeout)?;
    let applied = crate::reset(&mut conn)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("failed to reset")?;
    println!(
        "database {name} reset: {} migrations applied",
        applied.len()
    );
    Ok(())
}

/// Every work checked against the rules of `pp_lib::db::integrity`: a line of totals, then one line
/// per wrong work (the first few); exit 3 when one is wrong.
fn verify(config: &DatabaseConfig) -> anyhow::Result<ExitCode> {
    let name = database_name(&config.url)?;
    let mut conn = establish(&config.url, config.connect_timeout)?;
    let integrity = pp_lib::db::integrity::wrong_works(&mut conn, VERIFY_EXAMPLES)
        .context("failed to read the works")?;
    println!(
        "database {name}: {} work(s) checked, {} wrong",
        integrity.checked, integrity.wrong
    );
    for wrong in &integrity.examples {
        println!(
            "  work {} ({}): {}",
            wrong.id,
            wrong.work_code,
            wrong.why.join("; ")
        );
    }
    if integrity.wrong > integrity.examples.len() as u64 {
        println!(
            "  … and {} more",
            integrity.wrong - integrity.examples.len() as u64
        );
    }
    Ok(if integrity.wrong == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FOUND)
    })
}
