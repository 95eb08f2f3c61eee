//! `pp_storage`: creates, migrates, inspects and resets pp's PostgreSQL database, and checks that
//! the services pp runs on answer.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pp_lib::config::{AmqpConfig, DatabaseConfig, RedisConfig, load_dotenv};
use pp_lib::db::establish;
use pp_storage::cli::{Cli, Command};
use pp_storage::services::{self, Line, Reachability, ServiceKind};
use pp_storage::{DatabaseCreation, create_database_if_missing, database_name};

/// Exit code of `check` when a service does not answer.
const EXIT_SILENT: u8 = 3;

fn main() -> ExitCode {
    pp_lib::logging::init();
    match load_dotenv()
        .map_err(anyhow::Error::from)
        .and_then(|()| run(Cli::parse()))
    {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pp_storage: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = &cli.database;
    match cli.command {
        Command::Check {
            services,
            wait,
            amqp,
            redis,
        } => return check(config, &services, wait, &amqp, &redis),
        Command::Migrate => migrate(config)?,
        Command::Status => status(config)?,
        Command::Reset { yes } => reset(config, yes)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per service; exit 3 when one is silent.
fn check(
    database: &DatabaseConfig,
    kinds: &[ServiceKind],
    wait: Duration,
    amqp: &AmqpConfig,
    redis: &RedisConfig,
) -> anyhow::Result<ExitCode> {
    let services = services::configured(kinds, &database.url, &amqp.url, redis.url.as_ref())?;
    let found = services::check(&services, wait);
    for (service, state) in services.iter().zip(&found) {
        println!("{}", Line(service, *state));
    }
    if found.contains(&Reachability::Silent) {
        return Ok(ExitCode::from(EXIT_SILENT));
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
    let applied = pp_storage::run_pending_migrations(&mut conn)
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
    let states = pp_storage::migration_status(&mut conn)
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
    let applied = pp_storage::reset(&mut conn)
        .map_err(|error| anyhow::anyhow!("{error}"))
        .context("failed to reset")?;
    println!(
        "database {name} reset: {} migrations applied",
        applied.len()
    );
    Ok(())
}
