//! What every handler shares: the pool, the metrics, the settings that shape answers.

use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use pp_lib::db::{PgConnection, PgPool};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Shared by all workers (cheap to clone: handles only).
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub metrics: Arc<Metrics>,
    pub idempotency_ttl: Duration,
}

impl AppState {
    /// Runs `query` with a pooled connection on actix's blocking pool, so the worker thread
    /// stays free while PostgreSQL answers.
    pub async fn run_db<T, F>(&self, query: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut PgConnection) -> Result<T, pp_lib::Error> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        let outcome = web::block(move || {
            let mut conn = pool.get()?;
            query(&mut conn)
        })
        .await?;
        outcome.map_err(ApiError::from)
    }
}
