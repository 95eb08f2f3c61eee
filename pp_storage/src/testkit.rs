//! A database per test: unique name, migrated, dropped when the test ends (passed or panicked);
//! and the questions tests ask of it (feature `testkit`).
//!
//! Tests run in parallel without seeing each other's rows, and leave nothing behind. The server is
//! the one `DATABASE_URL` (or `.env`, or the default) points at; if it cannot be reached the test
//! fails, naming `make setup` — it never skips itself.
//!
//! ```text
//! let db = TestDatabase::create();              // or create_async().await in async tests
//! let mut conn = db.connect();
//! // … queries on a fresh, empty, migrated schema …
//! db.eventually_count(DONE_DEMANDS, 3).await;   // waits, with the testkit's one patience
//! db.assert_recorded_once(&ids);                // each demand once, every work right
//! ```

use std::collections::HashSet;
use std::time::Duration;

use diesel::Connection;
use diesel::pg::PgConnection;
use pp_lib::config::{DEFAULT_DATABASE_URL, DatabaseConfig, SecretUrl, load_dotenv};
use pp_lib::db::integrity::{Integrity, wrong_works};
use pp_lib::db::works::finish_works;
use pp_lib::db::{PgPool, build_pool, establish};
use pp_lib::testkit::{eventually, exactly};
use pp_lib::work::Work;
use uuid::Uuid;

use crate::{create_database_if_missing, drop_database, run_pending_migrations};

/// Works recorded from demands (every one is done as it is recorded).
pub const DONE_DEMANDS: &str =
    "select count(*) as n from works where demand_id is not null and done";
/// Works created over HTTP that wait for the sweeper.
pub const PENDING_API_WORKS: &str =
    "select count(*) as n from works where demand_id is null and not done";
/// Works created over HTTP that the sweeper finished.
pub const DONE_API_WORKS: &str = "select count(*) as n from works where demand_id is null and done";
/// Demands accepted over HTTP that no relay has published yet.
pub const UNPUBLISHED_DEMANDS: &str =
    "select count(*) as n from demand_outbox where published_on is null";
/// Every event.
pub const EVENTS: &str = "select count(*) as n from events";
/// Statements of this database waiting for a lock (the sign a request is held where a test
/// wants it).
pub const WAITING_ON_A_LOCK: &str = "select count(*) as n from pg_stat_activity \
    where datname = current_database() and wait_event_type = 'Lock'";

/// Wrong works a failed assertion shows.
const WRONG_SHOWN: usize = 5;

/// Prefix of every test database's name, so leftovers are easy to recognise.
pub const TEST_DATABASE_PREFIX: &str = pp_lib::testkit::TEST_NAME_PREFIX;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A freshly migrated database that is dropped with this value.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: SecretUrl,
}

impl TestDatabase {
    /// Creates and migrates a database with a unique name. Panics, naming `make setup`, when the
    /// server cannot be reached: a test without its database must fail, not pass unseen.
    pub fn create() -> TestDatabase {
        let server = server_url();
        let name = pp_lib::testkit::unique_name();
        let url = server.with_path(&name);
        if let Err(error) = create_database_if_missing(&url, CONNECT_TIMEOUT) {
            panic!(
                "cannot create test database {name} on {server}: {error}\n\
                 Is PostgreSQL running? Run `make setup` first (or set DATABASE_URL)."
            );
        }
        let database = TestDatabase { name, url };
        let mut conn = database.connect();
        if let Err(error) = run_pending_migrations(&mut conn) {
            panic!("cannot migrate test database {}: {error}", database.name);
        }
        database
    }

    /// [`TestDatabase::create`] on a blocking thread, for async tests.
    pub async fn create_async() -> TestDatabase {
        tokio::task::spawn_blocking(TestDatabase::create)
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
    }

    /// The database's name: `pp_test_…`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The URL of this database (on the configured server).
    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    /// Default settings pointing at this database, with a small pool.
    pub fn config(&self) -> DatabaseConfig {
        DatabaseConfig {
            pool_size: 4,
            ..DatabaseConfig::for_url(self.url.clone())
        }
    }

    /// A single connection to this database.
    pub fn connect(&self) -> PgConnection {
        establish(&self.url, CONNECT_TIMEOUT).unwrap_or_else(|error| {
            panic!("cannot connect to test database {}: {error}", self.name)
        })
    }

    /// A name for another database on the same server, `<this name>_<suffix>`, which is not
    /// created but is dropped (if it then exists) when the returned value goes: for tests of
    /// creating databases.
    pub fn scratch(&self, suffix: &str) -> ScratchDatabase {
        ScratchDatabase {
            url: self.url.with_path(&format!("{}_{suffix}", self.name)),
        }
    }

    /// One number from `sql` (`select … as n`) on a connection of its own, for assertions.
    pub fn count(&self, sql: &str) -> i64 {
        count(&mut self.connect(), sql)
    }

    /// Waits until `sql` (`select … as n`) counts `expected`.
    pub async fn eventually_count(&self, sql: &str, expected: i64) {
        let what = format!("{expected} from `{sql}`");
        eventually(&what, async || exactly(self.count(sql), expected)).await;
    }

    /// Every work checked against pp's rules (`pp_lib::db::integrity`).
    pub fn integrity(&self) -> Integrity {
        wrong_works(&mut self.connect(), WRONG_SHOWN)
            .unwrap_or_else(|error| panic!("checking the works of {}: {error}", self.name))
    }

    /// Asserts every work keeps pp's rules: a done one has its sum and its three events, a
    /// pending one none.
    pub fn assert_no_wrong_works(&self) {
        let integrity = self.integrity();
        assert_eq!(
            integrity.wrong, 0,
            "{} of {} works are wrong, e.g. {:?}",
            integrity.wrong, integrity.checked, integrity.examples
        );
    }

    /// Asserts the works recorded from demands are exactly `demand_ids`, each once, and that
    /// every work keeps pp's rules.
    pub fn assert_recorded_once(&self, demand_ids: &[Uuid]) {
        use diesel::prelude::*;
        use pp_lib::schema::works;
        let stored: Vec<Option<Uuid>> = works::table
            .filter(works::demand_id.is_not_null())
            .select(works::demand_id)
            .load(&mut self.connect())
            .unwrap_or_else(|error| panic!("reading the demand ids: {error}"));
        let stored: Vec<Uuid> = stored.into_iter().flatten().collect();
        let unique: HashSet<Uuid> = stored.iter().copied().collect();
        assert_eq!(unique.len(), stored.len(), "a demand was recorded twice");
        let expected: HashSet<Uuid> = demand_ids.iter().copied().collect();
        assert_eq!(
            unique.len(),
            expected.len(),
            "{} demands recorded, {} expected",
            unique.len(),
            expected.len()
        );
        assert!(
            unique == expected,
            "the recorded demands differ from the expected ones"
        );
        self.assert_no_wrong_works();
    }

    /// A pool over this database, built with [`TestDatabase::config`].
    pub fn pool(&self) -> PgPool {
        build_pool(&self.config())
            .unwrap_or_else(|error| panic!("cannot build a pool for {}: {error}", self.name))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // `with (force)` closes the sessions pools of the test may still hold. A database left
        // behind fails the test (a passing test's warnings are never seen), unless it is
        // failing already.
        if let Err(error) = drop_database(&self.url, CONNECT_TIMEOUT) {
            let what = format!("test database {}: {error}", self.name);
            if std::thread::panicking() {
                eprintln!("warning: left behind {what}");
            } else {
                panic!("left behind {what}");
            }
        }
    }
}

/// A database name reserved by [`TestDatabase::scratch`]; dropped, if it exists, with this value.
#[derive(Debug)]
pub struct ScratchDatabase {
    url: SecretUrl,
}

impl ScratchDatabase {
    pub fn url(&self) -> &SecretUrl {
        &self.url
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        if let Err(error) = drop_database(&self.url, CONNECT_TIMEOUT) {
            eprintln!(
                "warning: could not drop scratch database {}: {error}",
                self.url.path()
            );
        }
    }
}

/// The server tests use: `DATABASE_URL` (from the environment or `.env`) or the default.
fn server_url() -> SecretUrl {
    if let Err(error) = load_dotenv() {
        panic!("{error}");
    }
    let text = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    text.parse()
        .unwrap_or_else(|error| panic!("DATABASE_URL is not usable: {error}"))
}

/// One number from `sql` (`select … as n`), for assertions; panics naming the statement when it
/// fails.
pub fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::RunQueryDsl::get_result::<Count>(diesel::sql_query(sql), conn)
        .unwrap_or_else(|error| panic!("{sql}: {error}"))
        .n
}

/// Finishes a pending work as the sweeper does (pp_lib's `finish_works`, in one transaction: the
/// result, then its three events) and returns it done, for tests that need done works. Panics
/// when the work is not pending.
pub fn finish_work(conn: &mut PgConnection, work: &Work) -> Work {
    let finished = conn
        .transaction(|conn| finish_works(conn, std::slice::from_ref(work)))
        .unwrap_or_else(|error| panic!("finishing work {}: {error}", work.id));
    finished
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("work {} is not pending", work.id))
}
