//! What every handler shares: the pool, the metrics, the settings that shape answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use pp_lib::cache::{SingleFlight, WorkCache, WorkJson, work_json};
use pp_lib::db::announce::Announcer;
use pp_lib::db::outbox::OUTBOX_ADDED;
use pp_lib::db::works::{
    SearchPlanning, WORKS_PENDING, WorkSearch, find_work, find_works, insert_work, insert_works,
    search_narrow_works, search_works,
};
use pp_lib::db::{PgConnection, PgPool, with_connection};
use pp_lib::work::{NewWork, Work};

use crate::db_lanes::{Batcher, Lane};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::waiters::{WaitConfig, Waiters};

/// Why a shared lookup failed, in a form every caller that shared it can take a copy of.
#[derive(Debug, Clone)]
pub enum LoadFailure {
    /// The database cannot be reached now (503).
    Unavailable(String),
    /// Too many requests wait for the database (503, not run).
    Busy,
    /// Anything else (500).
    Internal(String),
}

impl From<LoadFailure> for ApiError {
    fn from(failure: LoadFailure) -> Self {
        match failure {
            LoadFailure::Unavailable(reason) => ApiError::Unavailable(pp_lib::Error::Pool(reason)),
            LoadFailure::Busy => ApiError::Busy,
            LoadFailure::Internal(reason) => ApiError::Internal(anyhow::anyhow!(reason)),
        }
    }
}

impl From<ApiError> for LoadFailure {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Unavailable(cause) => LoadFailure::Unavailable(cause.to_string()),
            ApiError::Busy => LoadFailure::Busy,
            other => LoadFailure::Internal(format!("{other:#}")),
        }
    }
}

/// A work's JSON read through the cache, or none (no such work).
pub type WorkLookup = Result<Option<WorkJson>, LoadFailure>;

/// Shared by all workers (cheap to clone: handles only).
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    pub idempotency_ttl: Duration,
    /// `GET /work/{id}`, batched.
    pub work_finder: Arc<Batcher<i64, Option<Work>>>,
    /// `POST /work` without an idempotency key, batched.
    pub work_inserter: Arc<Batcher<NewWork, Work>>,
    /// `GET /work/search` for a narrow prefix, batched (see [`SearchPlanning::Together`]).
    pub narrow_searcher: Arc<Batcher<WorkSearch, Vec<Work>>>,
    /// `GET /work/search` for any other prefix, one search at a time per database thread.
    pub work_searcher: Arc<Batcher<WorkSearch, Vec<Work>>>,
    /// Woken when a demand enters the outbox, so the relay publishes it at once.
    pub outbox_wakeup: Arc<tokio::sync::Notify>,
    /// Tells the other processes, after the commit, of works and demands this one wrote: the
    /// sweepers ([`WORKS_PENDING`]) and the other replicas' relays ([`OUTBOX_ADDED`]).
    pub announcer: Arc<Announcer>,
    /// The requests waiting for works to be done (`Prefer: wait`).
    pub waiters: Arc<Waiters>,
    /// Longest wait honoured.
    pub wait_max: Duration,
    /// Works cached in Redis and memory (disabled without Redis).
    pub cache: Arc<WorkCache>,
    /// Cache misses for the same work share one database read.
    pub work_loads: Arc<SingleFlight<i64, WorkLookup>>,
    /// Whether this process relays the outbox (and so holds a connection to RabbitMQ that
    /// readiness reports).
    pub relaying: bool,
    /// Room for the queries that are not batched ([`AppState::run_db`]): fewer than the pool's
    /// connections, so however many such requests arrive, the batch threads keep connections.
    unbatched: Arc<tokio::sync::Semaphore>,
    /// Longest a request waits for a database thread or connection before it is answered 503.
    deadline: Duration,
}

impl AppState {
    /// The shared state over `pool`, with its batching database threads: for the searches that
    /// run alone, two per core but never more than the pool has connections less two (at least
    /// one), so a flood of them always leaves connections for the other requests and for
    /// unbatched queries; for lookups, inserts and narrow searches, no more than that and one
    /// per core. A request waits at most `deadline` for a thread (or, unbatched, for its turn)
    /// before it is answered 503.
    pub fn new(
        pool: PgPool,
        metrics: Arc<Metrics>,
        idempotency_ttl: Duration,
        cache: WorkCache,
        deadline: Duration,
        wait: &WaitConfig,
    ) -> std::io::Result<Self> {
        let pool_size = usize::try_from(pool.max_size()).unwrap_or(usize::MAX);
        let threads = usize::try_from(pool.max_size().saturating_sub(2))
            .unwrap_or(1)
            .max(1);
        // Batched lookups and inserts need few threads: the requests that arrive while one
        // statement runs make the next batch. One thread per core keeps every core busy; more
        // only make smaller batches, more statements and more context switches (measured: a
        // third fewer lookups per second with six threads than with two, on two cores).
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let batch_threads = threads.min(cores);
        // A search that runs alone keeps PostgreSQL's core busy reading its window: more of them
        // at once than two per core add no speed, only memory (each thread's allocations stay in
        // an arena of its own: measured 0.6 MiB each after searches of 1,000 works).
        let search_threads = threads.min(2 * cores);
        let work_finder = Batcher::start(
            "pp-find",
            pool.clone(),
            Lane::together(batch_threads, deadline),
            find_batch,
            find_one,
        )?;
        let work_inserter = Batcher::start(
            "pp-insert",
            pool.clone(),
            Lane::together(batch_threads, deadline),
            insert_batch,
            insert_one,
        )?;
        // A narrow search reads a handful of rows, like a lookup: those are batched the same way.
        let narrow_searcher = Batcher::start(
            "pp-search-narrow",
            pool.clone(),
            Lane::together(batch_threads, deadline),
            narrow_search_batch,
            search_one,
        )?;
        // Any other search may read thousands of rows where a lookup reads one: each runs alone,
        // so a slow one holds up no other, and one that times out is answered 503, not run again.
        let work_searcher = Batcher::start(
            "pp-search",
            pool.clone(),
            Lane::alone(search_threads, deadline),
            search_batch,
            search_one,
        )?;
        Ok(AppState {
            pool,
            metrics,
            idempotency_ttl,
            work_finder: Arc::new(work_finder),
            work_inserter: Arc::new(work_inserter),
            narrow_searcher: Arc::new(narrow_searcher),
            work_searcher: Arc::new(work_searcher),
            outbox_wakeup: Arc::new(tokio::sync::Notify::new()),
            announcer: Announcer::new(&[WORKS_PENDING, OUTBOX_ADDED]),
            waiters: Waiters::new(wait.waiters as usize),
            wait_max: wait.max,
            cache: Arc::new(cache),
            work_loads: Arc::new(SingleFlight::new()),
            relaying: false,
            unbatched: Arc::new(tokio::sync::Semaphore::new(unbatched_room(pool_size))),
            deadline,
        })
    }

    /// The wait `request` prefers (`Prefer: wait=N`), capped by the setting; `None` when it asks
    /// none.
    pub fn preferred_wait(&self, request: &actix_web::HttpRequest) -> Option<Duration> {
        crate::waiters::preferred_wait(request.headers())
            .map(|seconds| Duration::from_secs(seconds).min(self.wait_max))
    }

    /// The work with this id, read from PostgreSQL itself (a request that waited must see what
    /// was committed, not what a cache kept).
    pub async fn fresh_work(&self, id: i64) -> Result<Work, ApiError> {
        self.run_db(move |conn| pp_lib::contract::get_work(conn, id))
            .await
    }

    /// After works were created pending (committed): the sweepers finish them at once.
    pub fn works_created(&self) {
        self.announcer.announce(WORKS_PENDING);
    }

    /// After demands entered the outbox (committed): this process's relay and every other
    /// replica's publish them at once.
    pub fn demands_accepted(&self) {
        self.outbox_wakeup.notify_one();
        self.announcer.announce(OUTBOX_ADDED);
    }

    /// A work's JSON: from the cache when it holds it, else read from PostgreSQL (one read for
    /// every concurrent request for this id) and cached. `None`: no work has this id.
    pub async fn work_json(&self, id: i64) -> Result<Option<WorkJson>, ApiError> {
        if !self.cache.is_enabled() {
            // No cache to fill: the batcher alone makes concurrent lookups one statement.
            let work = self.work_finder.submit(id).await?;
            return Ok(work.as_ref().map(work_json));
        }
        if let Some(json) = self.cache.get(id).await {
            return Ok(Some(json));
        }
        let lookup = self
            .work_loads
            .run(id, || {
                let (finder, cache) = (self.work_finder.clone(), self.cache.clone());
                async move {
                    match finder.submit(id).await {
                        Ok(Some(work)) => Ok(Some(cache.put(&work).await)),
                        Ok(None) => Ok(None),
                        Err(error) => Err(LoadFailure::from(error)),
                    }
                }
            })
            .await;
        Ok(lookup?)
    }

    /// The works that match `search`: batched with others when it is narrow, else alone.
    pub async fn search_works(&self, search: WorkSearch) -> Result<Vec<Work>, ApiError> {
        match SearchPlanning::for_prefix(&search.code_prefix) {
            SearchPlanning::Together => self.narrow_searcher.submit(search).await,
            SearchPlanning::Prepared | SearchPlanning::WithValues => {
                self.work_searcher.submit(search).await
            }
        }
    }

    /// Runs `query` with a pooled connection on actix's blocking pool, so the worker thread
    /// stays free while PostgreSQL answers. At most half the pool's connections serve such
    /// queries at once; a request that cannot start within the deadline is answered 503 and
    /// not run.
    pub async fn run_db<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, pp_lib::Error> + Send + 'static,
        T: Send + 'static,
    {
        let permit = tokio::time::timeout(self.deadline, self.unbatched.clone().acquire_owned())
            .await
            .map_err(|_| ApiError::Busy)?
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("the database room was closed")))?;
        let pool = self.pool.clone();
        let outcome = web::block(move || {
            let _permit = permit;
            with_connection(&pool, query)
        })
        .await?;
        outcome.map_err(ApiError::from)
    }
}

/// How many unbatched queries may run at once over a pool of `pool_size`: half of it (at least
/// one), so the other half is always there for the batch threads.
fn unbatched_room(pool_size: usize) -> usize {
    (pool_size / 2).max(1)
}

fn find_batch(conn: &mut PgConnection, ids: &[i64]) -> Result<Vec<Option<Work>>, pp_lib::Error> {
    let mut found: HashMap<i64, Work> = find_works(conn, ids)?
        .into_iter()
        .map(|work| (work.id, work))
        .collect();
    // The same id may be asked twice in one batch: the last asker takes the row, the others a copy.
    let mut answers: Vec<Option<Work>> = Vec::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        let asked_again = ids[index + 1..].contains(id);
        answers.push(if asked_again {
            found.get(id).cloned()
        } else {
            found.remove(id)
        });
    }
    Ok(answers)
}

fn find_one(conn: &mut PgConnection, id: &i64) -> Result<Option<Work>, pp_lib::Error> {
    Ok(find_work(conn, *id)?)
}

fn insert_batch(
    conn: &mut PgConnection,
    new_works: &[NewWork],
) -> Result<Vec<Work>, pp_lib::Error> {
    let mut stored: HashMap<String, Work> = insert_works(conn, new_works)?
        .into_iter()
        .map(|work| (work.work_code.clone(), work))
        .collect();
    // Codes are unique (the table says so), so every new work is found exactly once.
    Ok(new_works
        .iter()
        .filter_map(|new_work| stored.remove(&new_work.work_code))
        .collect())
}

fn insert_one(conn: &mut PgConnection, new_work: &NewWork) -> Result<Work, pp_lib::Error> {
    Ok(insert_work(conn, new_work)?)
}

/// Searches run alone (see [`Batching::Alone`]): a "batch" holds one.
fn search_batch(
    conn: &mut PgConnection,
    searches: &[WorkSearch],
) -> Result<Vec<Vec<Work>>, pp_lib::Error> {
    searches
        .iter()
        .map(|search| search_one(conn, search))
        .collect()
}

fn narrow_search_batch(
    conn: &mut PgConnection,
    searches: &[WorkSearch],
) -> Result<Vec<Vec<Work>>, pp_lib::Error> {
    Ok(search_narrow_works(conn, searches)?)
}

fn search_one(conn: &mut PgConnection, search: &WorkSearch) -> Result<Vec<Work>, pp_lib::Error> {
    Ok(search_works(conn, search)?)
}
