//! Migrations up, down and again, the updated_on trigger, and creating databases safely.

use std::time::Duration;

use diesel::prelude::*;
use pp_lib::db::works::insert_work;
use pp_lib::testkit::{eventually_blocking, exactly};
use pp_lib::work::NewWork;
use pp_storage::testkit::{TestDatabase, count};
use pp_storage::{
    DatabaseCreation, MIGRATIONS, create_database_if_missing, database_exists, drop_database,
    migration_status, reset, run_pending_migrations,
};

const TIMEOUT: Duration = Duration::from_secs(5);

fn table_names(conn: &mut PgConnection) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = diesel::sql_types::Text)]
        tablename: String,
    }
    let tables: Vec<Table> = diesel::sql_query(
        "select tablename::text from pg_tables where schemaname = 'public' \
         and tablename not like '\\_\\_diesel%' order by tablename",
    )
    .load(conn)
    .expect("list tables");
    tables.into_iter().map(|table| table.tablename).collect()
}

#[test]
fn a_fresh_database_has_every_migration_applied() {
    let db = TestDatabase::create();
    let mut conn = db.connect();

    let states = migration_status(&mut conn).expect("status");
    let embedded = diesel::migration::MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS)
        .expect("embedded migrations")
        .len();

    assert_eq!(states.len(), embedded);
    assert!(
        states.iter().all(|state| state.applied_on.is_some()),
        "{states:?}"
    );
    assert_eq!(
        table_names(&mut conn),
        [
            "accounts",
            "api_keys",
            "audit_events",
            "demand_outbox",
            "events",
            "idempotency_keys",
            "sessions",
            "works",
            "works_finished"
        ]
    );
    assert!(
        run_pending_migrations(&mut conn)
            .expect("migrate again")
            .is_empty(),
        "idempotent"
    );
}

#[test]
fn reset_reverts_every_migration_and_reapplies_them_on_an_empty_schema() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    insert_work(&mut conn, &NewWork::from_api(3)).expect("insert");

    let applied = reset(&mut conn).expect("reset");

    assert_eq!(
        applied.len(),
        migration_status(&mut conn).expect("status").len()
    );
    let works: i64 = pp_lib::schema::works::table
        .count()
        .get_result(&mut conn)
        .expect("count");
    assert_eq!(works, 0, "reset deletes every row");
    insert_work(&mut conn, &NewWork::from_api(3)).expect("the schema works after a reset");
}

#[test]
fn down_migrations_remove_everything_they_created() {
    use diesel_migrations::MigrationHarness;
    let db = TestDatabase::create();
    let mut conn = db.connect();

    conn.revert_all_migrations(MIGRATIONS).expect("revert");

    assert!(table_names(&mut conn).is_empty(), "no table is left");
    let functions = count(
        &mut conn,
        "select count(*) as n from pg_proc p join pg_namespace s on s.oid = p.pronamespace \
         where s.nspname = 'public'",
    );
    assert_eq!(functions, 0, "no function is left");
    let states = migration_status(&mut conn).expect("status");
    assert!(
        states.iter().all(|state| state.applied_on.is_none()),
        "{states:?}"
    );
}

#[test]
fn updated_on_follows_every_update() {
    use pp_lib::schema::works;
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_work(&mut conn, &NewWork::from_api(1)).expect("insert");
    diesel::update(works::table.find(work.id))
        .set(works::created_on.eq(work.created_on - chrono::Duration::hours(1)))
        .execute(&mut conn)
        .expect("a first update");
    // now() is the transaction's start: the next update runs once the database's clock has
    // moved past this one's.
    let first: chrono::DateTime<chrono::Utc> = works::table
        .find(work.id)
        .select(works::updated_on)
        .get_result(&mut conn)
        .expect("read back");
    eventually_blocking("the database's clock to move on", || {
        exactly(
            db.count(&format!(
                "select (clock_timestamp() > '{}'::timestamptz)::int::bigint as n",
                first.to_rfc3339()
            )),
            1,
        )
    });
    diesel::update(works::table.find(work.id))
        .set(works::add_up_to.eq(2))
        .execute(&mut conn)
        .expect("a plain update");

    let updated: chrono::DateTime<chrono::Utc> = works::table
        .find(work.id)
        .select(works::updated_on)
        .get_result(&mut conn)
        .expect("read back");
    assert!(updated > work.updated_on, "{updated} > {}", work.updated_on);
}

#[test]
fn databases_are_created_once_and_dropped() {
    let db = TestDatabase::create();
    let scratch = db.scratch("extra");
    let url = scratch.url();
    let mut admin = db.connect();

    assert_eq!(
        create_database_if_missing(url, TIMEOUT).expect("create"),
        DatabaseCreation::Created
    );
    assert_eq!(
        create_database_if_missing(url, TIMEOUT).expect("create again"),
        DatabaseCreation::AlreadyExisted
    );
    assert!(database_exists(&mut admin, url.path()).expect("exists"));

    drop_database(url, TIMEOUT).expect("drop");
    assert!(!database_exists(&mut admin, url.path()).expect("exists"));
    drop_database(url, TIMEOUT).expect("dropping a missing database is fine");
}

#[test]
fn concurrent_creations_of_one_database_all_succeed() {
    let db = TestDatabase::create();
    let scratch = db.scratch("race");
    let creators: Vec<_> = (0..4)
        .map(|_| {
            let url = scratch.url().clone();
            std::thread::spawn(move || create_database_if_missing(&url, TIMEOUT))
        })
        .collect();
    let outcomes: Vec<DatabaseCreation> = creators
        .into_iter()
        .map(|creator| creator.join().expect("thread").expect("create"))
        .collect();

    let created = outcomes
        .iter()
        .filter(|outcome| **outcome == DatabaseCreation::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
}
