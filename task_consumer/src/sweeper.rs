//! The sweeper: finishes works created over HTTP (`POST /work` leaves them pending).
//!
//! Every `every`, it claims pending API-created works created within `window`, oldest first, in
//! batches, with `FOR UPDATE SKIP LOCKED`, and in the same transaction records their three events
//! and marks them done (see `pp_lib::db::works::sweep_pending_works`). It repeats until a batch
//! comes back short, so a backlog drains in one sweep. Any number of consumers may sweep at once:
//! a row one of them holds is skipped by the others, and a done row is never claimed again.

use std::sync::Arc;
use std::time::Duration;

use pp_lib::db::{PgPool, with_connection};
use pp_lib::shutdown::Shutdown;

use crate::metrics::Metrics;
use crate::settings::SweeperConfig;

/// Sweeps until shutdown. Does nothing when `every` is zero.
pub async fn sweep(pool: PgPool, config: SweeperConfig, metrics: Arc<Metrics>, shutdown: Shutdown) {
    if config.every.is_zero() {
        log::info!("sweeper off");
        return;
    }
    let window = match chrono::Duration::from_std(config.window) {
        Ok(window) => window,
        Err(_) => chrono::Duration::days(36_500),
    };
    let mut ticks = tokio::time::interval(config.every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.requested() => return,
        }
        while !shutdown.is_requested() {
            let pool = pool.clone();
            let since = chrono::Utc::now() - window;
            let limit = config.batch;
            let outcome = tokio::task::spawn_blocking(move || {
                with_connection(&pool, |conn| {
                    pp_lib::db::works::sweep_pending_works(conn, since, limit)
                })
            })
            .await;
            match outcome {
                Ok(Ok(done)) => {
                    if failing {
                        log::info!("sweeper: the database answers again");
                        failing = false;
                    }
                    if !done.is_empty() {
                        metrics.swept.inc_by(done.len() as u64);
                        log::info!("sweeper finished {} API-created work(s)", done.len());
                    }
                    if (done.len() as i64) < limit {
                        break;
                    }
                }
                Ok(Err(error)) => {
                    if !failing {
                        log::warn!("sweeper: {error}; trying again next sweep");
                        failing = true;
                    }
                    break;
                }
                Err(error) => {
                    log::error!("sweeper: a sweep panicked: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}
