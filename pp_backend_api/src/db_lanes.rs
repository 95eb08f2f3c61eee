//! Database lanes: bounded queues in front of database threads, which batch small, independent
//! statements under load and shed what waits past its deadline. Under load, the requests that
//! arrive while the database is busy are served together, by one statement and one pooled
//! connection.
//!
//! A [`Batcher`] owns a few database threads (the blocking work never runs on an actix worker).
//! Each thread takes the first waiting request, plus every other one already queued (up to a
//! maximum), runs them as one statement (e.g. `where id = any($1)`, or a multi-row insert), and
//! answers each. A lone request is a batch of one and waits for nothing: batching costs no
//! latency at low load, and under load it divides the round trips, the thread hand-offs and the
//! per-statement work of PostgreSQL by the batch size.
//!
//! A request's statement always starts after the request arrived, so a batch never answers with
//! data older than the request. When a batch statement fails because of one item (it then fails
//! whole, writing nothing), each request is run again alone, so one bad item cannot fail its
//! neighbours; when the database is unreachable, every request of the batch is answered 503 at
//! once. A request whose client has gone is dropped before any work is done for it.
//!
//! Overload is answered, not queued: the queue is bounded, and a request that no thread has
//! taken within its deadline is answered 503 with `Retry-After` (load shedding) and never run.
//! A request that a thread took before its deadline runs to its end (the statement timeout
//! bounds it): so a 503 always means nothing was done, and a create answered 503 can be
//! retried without making two works.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pp_lib::db::{PgConnection, PgPool, with_connection};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::error::ApiError;

/// Most requests served by one statement.
pub const MAX_BATCH: usize = 64;

/// One statement for many items, answering in the items' order.
pub type BatchFn<I, O> = fn(&mut PgConnection, &[I]) -> Result<Vec<O>, pp_lib::Error>;
/// The same work for a single item, used when a batch fails.
pub type SingleFn<I, O> = fn(&mut PgConnection, &I) -> Result<O, pp_lib::Error>;

struct Pending<I, O> {
    item: I,
    reply: oneshot::Sender<Result<O, ApiError>>,
    /// Who has the request: still queued, taken by a thread (it will run), or given up by its
    /// requester at the deadline (it will not). Whoever moves it out of `QUEUED` decides.
    claim: Arc<AtomicU8>,
}

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const ABANDONED: u8 = 2;

type Queue<I, O> = Arc<Mutex<mpsc::Receiver<Pending<I, O>>>>;

/// Requests a lane may hold waiting, by default: far more than its threads serve at once
/// (`MAX_BATCH` each), far fewer than would take a deadline to drain.
pub const DEFAULT_QUEUE: usize = 4096;

/// How a [`Batcher`]'s requests are served: by how many threads, batched or alone, and how much
/// waiting is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lane {
    pub threads: usize,
    pub batching: Batching,
    /// Most requests waiting; more are answered 503 at once.
    pub queue: usize,
    /// Longest wait for a thread; a request not taken by then is answered 503.
    pub deadline: Duration,
}

impl Lane {
    /// `threads` threads serving batches, with the default queue; a request waits at most
    /// `deadline` (the API's `--http-deadline`).
    pub fn together(threads: usize, deadline: Duration) -> Self {
        Lane {
            threads,
            batching: Batching::Together,
            queue: DEFAULT_QUEUE,
            deadline,
        }
    }

    /// `threads` threads serving one request at a time, with the default queue; a request waits
    /// at most `deadline`.
    pub fn alone(threads: usize, deadline: Duration) -> Self {
        Lane {
            batching: Batching::Alone,
            ..Lane::together(threads, deadline)
        }
    }

    /// The same lane with another queue bound (at least 1).
    pub fn with_queue(self, queue: usize) -> Self {
        Lane {
            queue: queue.max(1),
            ..self
        }
    }
}

/// A queue in front of database threads that serve requests in batches.
pub struct Batcher<I, O> {
    queue: mpsc::Sender<Pending<I, O>>,
    deadline: Duration,
}

/// How a [`Batcher`]'s threads run the requests they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// Up to [`MAX_BATCH`] waiting requests at once, as one statement.
    Together,
    /// One request at a time: for statements whose cost varies so much (searches) that one
    /// slow request must not hold up others taken with it, nor be run twice when it fails.
    Alone,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the lane's database threads, named `name`. They stop when the batcher is dropped.
    pub fn start(
        name: &str,
        pool: PgPool,
        lane: Lane,
        batch: BatchFn<I, O>,
        single: SingleFn<I, O>,
    ) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::channel(lane.queue.max(1));
        let receiver: Queue<I, O> = Arc::new(Mutex::new(receiver));
        for index in 0..lane.threads.max(1) {
            let receiver = receiver.clone();
            let pool = pool.clone();
            let batching = lane.batching;
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || serve(&receiver, &pool, batching, batch, single))?;
        }
        Ok(Batcher {
            queue,
            deadline: lane.deadline,
        })
    }

    /// Queues `item` and waits for its answer: 503 ([`ApiError::Busy`]) at once when the queue
    /// is full, or when no thread took it within the deadline (it is then never run).
    pub async fn submit(&self, item: I) -> Result<O, ApiError> {
        let (reply, answer) = oneshot::channel();
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let pending = Pending {
            item,
            reply,
            claim: claim.clone(),
        };
        match self.queue.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(ApiError::Busy),
            Err(TrySendError::Closed(_)) => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "the database threads have stopped"
                )));
            }
        }
        let dropped = || ApiError::Internal(anyhow::anyhow!("a database thread dropped a request"));
        let mut answer = answer;
        match tokio::time::timeout_at(Instant::now() + self.deadline, &mut answer).await {
            Ok(outcome) => outcome.map_err(|_| dropped())?,
            Err(_) => {
                if claim
                    .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(ApiError::Busy);
                }
                // A thread took it in time: it runs (bounded by the statement timeout), and its
                // answer is the truth about what was done.
                answer.await.map_err(|_| dropped())?
            }
        }
    }
}

/// One database thread: take a batch, run it, answer, until the queue closes.
fn serve<I, O>(
    receiver: &Queue<I, O>,
    pool: &PgPool,
    batching: Batching,
    batch: BatchFn<I, O>,
    single: SingleFn<I, O>,
) {
    let most = match batching {
        Batching::Together => MAX_BATCH,
        Batching::Alone => 1,
    };
    while let Some(pending) = take_batch(receiver, most) {
        let (items, replies): (Vec<I>, Vec<_>) = pending
            .into_iter()
            .map(|Pending { item, reply, .. }| (item, reply))
            .unzip();
        // A bug that panics must cost this batch its answers, not the thread its life.
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            with_connection(pool, |conn| batch(conn, &items))
        }));
        match outcome {
            Ok(Ok(outputs)) if outputs.len() == items.len() => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(Ok(outputs)) => {
                // The statement ran (and may have written): answering is all that is safe.
                log::error!(
                    "a batch of {} answered {} results",
                    items.len(),
                    outputs.len()
                );
                answer_all(replies, || {
                    ApiError::Internal(anyhow::anyhow!("a batch lost results"))
                });
            }
            Ok(Err(error)) if error.is_transient() => {
                // The database is unreachable: every item would wait and fail the same way.
                let reason = error.to_string();
                answer_all(replies, || {
                    ApiError::Unavailable(pp_lib::Error::Pool(reason.clone()))
                });
            }
            Ok(Err(error)) if items.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error.into()));
                }
            }
            // One item made the statement fail (it failed whole, so nothing was written): run
            // each alone, so only that item gets the error.
            Ok(Err(_)) => run_each(pool, items, replies, single),
            Err(_) => {
                log::error!(
                    "a database thread panicked running a batch of {}",
                    items.len()
                );
                answer_all(replies, || {
                    ApiError::Internal(anyhow::anyhow!("a batch panicked"))
                });
            }
        }
    }
}

fn answer_all<O>(replies: Vec<oneshot::Sender<Result<O, ApiError>>>, error: impl Fn() -> ApiError) {
    for reply in replies {
        let _ = reply.send(Err(error()));
    }
}

fn run_each<I, O>(
    pool: &PgPool,
    items: Vec<I>,
    replies: Vec<oneshot::Sender<Result<O, ApiError>>>,
    single: SingleFn<I, O>,
) {
    for (item, reply) in items.into_iter().zip(replies) {
        if reply.is_closed() {
            continue;
        }
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            with_connection(pool, |conn| single(conn, &item)).map_err(ApiError::from)
        }))
        .unwrap_or_else(|_| {
            Err(ApiError::Internal(anyhow::anyhow!(
                "a database call panicked"
            )))
        });
        let _ = reply.send(outcome);
    }
}

/// Blocks for the first live request, then takes every other live one already queued, up to
/// `most`, claiming each. A request whose requester went away (the client disconnected) needs
/// no work done, and one given up at its deadline was told nothing would be: both are dropped
/// here, so they take no place in a batch. `None` once the queue is closed and empty.
fn take_batch<I, O>(receiver: &Queue<I, O>, most: usize) -> Option<Vec<Pending<I, O>>> {
    // Only one thread waits on the queue at a time; the others wait for the lock.
    let mut receiver = match receiver.lock() {
        Ok(receiver) => receiver,
        // A thread that panicked while holding the lock left the queue itself intact.
        Err(poisoned) => poisoned.into_inner(),
    };
    let live = |pending: &Pending<I, O>| {
        !pending.reply.is_closed()
            && pending
                .claim
                .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    };
    let mut batch = Vec::new();
    while batch.is_empty() {
        let first = receiver.blocking_recv()?;
        if live(&first) {
            batch.push(first);
        }
    }
    while batch.len() < most {
        match receiver.try_recv() {
            Ok(pending) if live(&pending) => batch.push(pending),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Some(batch)
}
