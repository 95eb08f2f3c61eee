//! Batching of small, independent statements: under load, the requests that arrive while the
//! database is busy are served together, by one statement and one pooled connection.
//!
//! A [`Batcher`] owns a few database threads (the blocking work never runs on an actix worker).
//! Each thread takes the first waiting request, plus every other one already queued (up to a
//! maximum), runs them as one statement (e.g. `where id = any($1)`, or a multi-row insert), and
//! answers each. A lone request is a batch of one and waits for nothing: batching costs no
//! latency at low load, and under load it divides the round trips, the thread hand-offs and the
//! per-statement work of PostgreSQL by the batch size.
//!
//! A request's statement always starts after the request arrived, so a batch never answers with
//! data older than the request. When a batch fails, each of its requests is run again alone, so
//! each gets its own answer or error and one bad item cannot fail its neighbours.

use std::sync::{Arc, Mutex};

use pp_lib::db::{PgConnection, PgPool, with_connection};
use tokio::sync::{mpsc, oneshot};

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
}

type Queue<I, O> = Arc<Mutex<mpsc::UnboundedReceiver<Pending<I, O>>>>;

/// A queue in front of `threads` database threads that serve requests in batches.
pub struct Batcher<I, O> {
    queue: mpsc::UnboundedSender<Pending<I, O>>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts `threads` database threads named `name`. They stop when the batcher is dropped.
    pub fn start(
        name: &str,
        pool: PgPool,
        threads: usize,
        batch: BatchFn<I, O>,
        single: SingleFn<I, O>,
    ) -> std::io::Result<Self> {
        let (queue, receiver) = mpsc::unbounded_channel();
        let receiver: Queue<I, O> = Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            let pool = pool.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{index}"))
                .spawn(move || serve(&receiver, &pool, batch, single))?;
        }
        Ok(Batcher { queue })
    }

    /// Queues `item` and waits for its answer.
    pub async fn submit(&self, item: I) -> Result<O, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Pending { item, reply }).map_err(|_| {
            ApiError::Internal(anyhow::anyhow!("the database threads have stopped"))
        })?;
        answer.await.map_err(|_| {
            ApiError::Internal(anyhow::anyhow!("a database thread dropped a request"))
        })?
    }
}

/// One database thread: take a batch, run it, answer, until the queue closes.
fn serve<I, O>(
    receiver: &Queue<I, O>,
    pool: &PgPool,
    batch: BatchFn<I, O>,
    single: SingleFn<I, O>,
) {
    while let Some(pending) = take_batch(receiver) {
        let items: Vec<I> = Vec::with_capacity(pending.len());
        let (items, replies): (Vec<I>, Vec<_>) = pending.into_iter().fold(
            (items, Vec::new()),
            |(mut items, mut replies), Pending { item, reply }| {
                items.push(item);
                replies.push(reply);
                (items, replies)
            },
        );
        match with_connection(pool, |conn| batch(conn, &items)) {
            Ok(outputs) if outputs.len() == items.len() => {
                for (reply, output) in replies.into_iter().zip(outputs) {
                    // A requester that went away (client disconnected) needs no answer.
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(outputs) => {
                log::error!(
                    "a batch of {} answered {} results; running each alone",
                    items.len(),
                    outputs.len()
                );
                run_each(pool, items, replies, single);
            }
            Err(error) if items.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error.into()));
                }
            }
            Err(_) => run_each(pool, items, replies, single),
        }
    }
}

fn run_each<I, O>(
    pool: &PgPool,
    items: Vec<I>,
    replies: Vec<oneshot::Sender<Result<O, ApiError>>>,
    single: SingleFn<I, O>,
) {
    for (item, reply) in items.into_iter().zip(replies) {
        let outcome = with_connection(pool, |conn| single(conn, &item)).map_err(ApiError::from);
        let _ = reply.send(outcome);
    }
}

/// Blocks for the first waiting request, then takes every other queued one up to [`MAX_BATCH`].
/// `None` once the queue is closed and empty.
fn take_batch<I, O>(receiver: &Queue<I, O>) -> Option<Vec<Pending<I, O>>> {
    // Only one thread waits on the queue at a time; the others wait for the lock.
    let mut receiver = match receiver.lock() {
        Ok(receiver) => receiver,
        // A thread that panicked while holding the lock left the queue itself intact.
        Err(poisoned) => poisoned.into_inner(),
    };
    let first = receiver.blocking_recv()?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match receiver.try_recv() {
            Ok(pending) => batch.push(pending),
            Err(_) => break,
        }
    }
    Some(batch)
}
