//! PostgreSQL access: the r2d2 pool and the queries, a module per table.
//!
//! Queries are plain functions, `fn(&mut PgConnection, …) -> QueryResult<T>`, so they compose
//! inside `conn.transaction(|conn| …)` and run the same from a test, a CLI or a server.
//!
//! # Diesel is synchronous: how async code must call it
//!
//! Every query blocks its thread until PostgreSQL answers, and so does taking a connection from
//! the pool when all are busy. Called directly from an async task it would stall that runtime
//! thread and every task queued on it. Async callers therefore move the whole unit of work — pool
//! checkout, queries, transaction — onto the blocking thread pool and await its result:
//!
//! ```text
//! // tokio (the consumer, the producer):
//! let pool = pool.clone();
//! let work = tokio::task::spawn_blocking(move || -> Result<_, pp_lib::Error> {
//!     let mut conn = pool.get()?;
//!     Ok(pp_lib::db::works::find_work(&mut conn, 7)?)
//! })
//! .await
//! .expect("the query task does not panic");
//! ```
//!
//! In actix-web handlers `actix_web::web::block(move || …)` does the same. Keep the closure
//! short and free of `.await`; never hold a pooled connection across an await point.

pub mod announce;
pub mod audit_trail;
pub mod backlogs;
pub mod events;
pub mod idempotency;
pub mod identities;
pub mod integrity;
#[cfg(feature = "listen")]
pub mod listen;
pub mod outbox;
pub mod pool;
pub mod stats;
pub mod throughput;
pub mod works;

pub use diesel::PgConnection;
pub use pool::{
    PgPool, PooledPg, build_pool, build_pool_lazy, discard_if_closed, establish, ping,
    with_connection,
};
