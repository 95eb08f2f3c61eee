//! The sweeper: finishes works created over HTTP (`POST /work` leaves them pending).
//!
//! Every `every`, it claims pending API-created works created within `window`, oldest first, in
//! batches, with `FOR UPDATE SKIP LOCKED`, and in the same transaction records their three events
//! and marks them done (see `pp_lib::db::works::sweep_pending_works`). It repeats until a batch
//! comes back short, so a backlog drains in one sweep. Any number of consumers may sweep at once:
//! a row one of them holds is skipped by the others, and a done row is never claimed again.

use std::sync::Arc;
use std::time::Duration;

use pp_lib::cache::WorkCache;
use pp_lib::db::PgPool;
use pp_lib::outage::Outage;
use pp_lib::shutdown::Shutdown;

use crate::metrics::Metrics;
use crate::settings::SweeperConfig;

/// Sweeps until shutdown. Does nothing when `every` is zero.
pub async fn sweep(
    pool: PgPool,
    cache: Arc<WorkCache>,
    config: SweeperConfig,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
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
    let mut database = Outage::new(
        module_path!(),
        "sweeper: the database",
        "trying again next sweep",
    );
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.requested() => return,
        }
        while !shutdown.is_requested() {
            let since = chrono::Utc::now() - window;
            let limit = config.batch;
            // Through the cache's write path: the finished works are published after the commit.
            let outcome =
                pp_lib::cache::writes::sweep_pending_works(&pool, &cache, since, limit).await;
            match outcome {
                Ok(done) => {
                    database.recovered();
                    if !done.is_empty() {
                        metrics.swept.inc_by(done.len() as u64);
                        log::info!("sweeper finished {} API-created work(s)", done.len());
                    }
                    if (done.len() as i64) < limit {
                        break;
                    }
                }
                Err(pp_lib::Error::Bug(error)) => {
                    log::error!("sweeper: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
                Err(error) => {
                    database.failed(&error);
                    break;
                }
            }
        }
    }
}
