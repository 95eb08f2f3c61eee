//! pp_storage: the database schema of pp, as Diesel migrations embedded in the binary.
//!
//! - [`MIGRATIONS`]: the SQL under `migrations/`, compiled in, so a deployed binary needs no files.
//! - [`create_database_if_missing`], [`run_pending_migrations`], [`migration_status`],
//!   [`reset`]: what the `pp_storage` binary's commands do, callable from other binaries and tests.
//! - [`cli`]: the `pp_storage` binary's command line; [`commands`]: what each command does;
//!   [`identities`]: the keys, accounts and audit trail commands.
//! - [`services`]: where PostgreSQL, RabbitMQ and Redis are configured, and whether they
//!   answer (`pp_storage check`, which `make setup` runs).
//! - `testkit` (feature `testkit`): a freshly migrated database per test, dropped afterwards.

use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text, Timestamptz};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use pp_lib::Error;
use pp_lib::config::SecretUrl;
use pp_lib::db::establish;

pub mod cli;
pub mod commands;
pub mod identities;
pub mod services;
#[cfg(feature = "testkit")]
pub mod testkit;

/// Every migration under `pp_storage/migrations`, embedded at compile time.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Database that administrative connections use to create or drop other databases.
pub const MAINTENANCE_DATABASE: &str = "postgres";

/// Errors of the migration harness. Its messages name migrations and SQL errors, never a URL.
pub type MigrationError = Box<dyn std::error::Error + Send + Sync>;

/// Whether [`create_database_if_missing`] had to create the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseCreation {
    Created,
    AlreadyExisted,
}

/// Creates the database named by `url`'s path when it does not exist, connecting to the server's
/// maintenance database to do so. Safe to run concurrently: a database created by someone else
/// in the meantime counts as existing.
pub fn create_database_if_missing(
    url: &SecretUrl,
    connect_timeout: Duration,
) -> Result<DatabaseCreation, Error> {
    let name = database_name(url)?;
    let mut admin = establish(&url.with_path(MAINTENANCE_DATABASE), connect_timeout)?;
    if database_exists(&mut admin, &name)? {
        return Ok(DatabaseCreation::AlreadyExisted);
    }
    match diesel::sql_query(format!("create database {}", quote_identifier(&name)))
        .execute(&mut admin)
    {
        Ok(_) => Ok(DatabaseCreation::Created),
        // A concurrent creator won the race: it reports "already exists", or, when both passed
        // the catalogue check together, a unique violation on pg_database's name index.
        Err(diesel::result::Error::DatabaseError(kind, info))
            if matches!(kind, diesel::result::DatabaseErrorKind::UniqueViolation)
                || info.message().contains("already exists") =>
        {
            Ok(DatabaseCreation::AlreadyExisted)
        }
        Err(error) => Err(error.into()),
    }
}

/// Drops the database named by `url`'s path, closing its sessions first. Missing is fine.
pub fn drop_database(url: &SecretUrl, connect_timeout: Duration) -> Result<(), Error> {
    let name = database_name(url)?;
    let mut admin = establish(&url.with_path(MAINTENANCE_DATABASE), connect_timeout)?;
    diesel::sql_query(format!(
        "drop database if exists {} with (force)",
        quote_identifier(&name)
    ))
    .execute(&mut admin)?;
    Ok(())
}

/// True when a database of this name exists on the server `conn` is connected to.
pub fn database_exists(conn: &mut PgConnection, name: &str) -> Result<bool, Error> {
    #[derive(QueryableByName)]
    struct Found {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Found =
        diesel::sql_query("select exists (select 1 from pg_database where datname = $1) as exists")
            .bind::<Text, _>(name)
            .get_result(conn)?;
    Ok(found.exists)
}

/// Applies every migration not yet applied, in order, and returns their names.
pub fn run_pending_migrations(conn: &mut PgConnection) -> Result<Vec<String>, MigrationError> {
    let applied: Vec<String> = conn
        .run_pending_migrations(MIGRATIONS)?
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(migration_names()?
        .into_iter()
        .filter(|(version, _)| applied.contains(version))
        .map(|(_, name)| name)
        .collect())
}

/// `(version, name)` of every embedded migration, oldest first.
fn migration_names() -> Result<Vec<(String, String)>, MigrationError> {
    let mut names: Vec<(String, String)> =
        diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)?
            .iter()
            .map(|migration| {
                (
                    migration.name().version().to_string(),
                    migration.name().to_string(),
                )
            })
            .collect();
    names.sort();
    Ok(names)
}

/// Reverts every applied migration, then applies them all again: an empty, current schema.
pub fn reset(conn: &mut PgConnection) -> Result<Vec<String>, MigrationError> {
    conn.revert_all_migrations(MIGRATIONS)?;
    run_pending_migrations(conn)
}

/// One embedded migration and whether this database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// `version_name`, as the folder under `migrations/` is called.
    pub name: String,
    pub version: String,
    /// When it was applied; `None` while pending.
    pub applied_on: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every embedded migration, oldest first, with the time it was applied here, if it was.
pub fn migration_status(conn: &mut PgConnection) -> Result<Vec<MigrationState>, MigrationError> {
    #[derive(QueryableByName)]
    struct Applied {
        #[diesel(sql_type = Text)]
        version: String,
        #[diesel(sql_type = Nullable<Timestamptz>)]
        run_on: Option<chrono::DateTime<chrono::Utc>>,
    }
    // The harness creates its bookkeeping table on first use; asking it first makes sure the
    // table exists before we read the application times from it.
    conn.applied_migrations()?;
    let applied: Vec<Applied> =
        diesel::sql_query("select version, run_on from __diesel_schema_migrations").load(conn)?;
    let mut migrations =
        diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)?;
    migrations.sort_by_key(|migration| migration.name().version().to_string());
    Ok(migrations
        .iter()
        .map(|migration| {
            let version = migration.name().version().to_string();
            let applied_on = applied
                .iter()
                .find(|row| row.version == version)
                .and_then(|row| row.run_on);
            MigrationState {
                name: migration.name().to_string(),
                version,
                applied_on,
            }
        })
        .collect())
}

/// The database name in `url`'s path, or a configuration error when there is none.
pub fn database_name(url: &SecretUrl) -> Result<String, Error> {
    let name = url.path();
    if name.is_empty() {
        return Err(Error::Config(format!(
            "the database URL {url} names no database (expected …/database_name)"
        )));
    }
    Ok(name.to_owned())
}

/// Quotes an SQL identifier: the name is data, whatever characters it holds.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("pp"), "\"pp\"");
        assert_eq!(quote_identifier("a\"b; drop"), "\"a\"\"b; drop\"");
    }

    #[test]
    fn a_url_without_a_database_is_refused() {
        let url: SecretUrl = "postgres://u:secret@h:5432".parse().expect("a valid URL");
        let error = database_name(&url).expect_err("no database name");
        let message = error.to_string();
        assert!(message.contains("names no database"), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn migrations_are_embedded_in_order() {
        let mut names: Vec<String> =
            diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
                .expect("embedded migrations load")
                .iter()
                .map(|migration| migration.name().to_string())
                .collect();
        assert!(
            names.iter().any(|name| name.ends_with("create_works")),
            "{names:?}"
        );
        let listed = names.clone();
        names.sort();
        assert_eq!(names, listed, "migrations sort by their version");
    }
}
