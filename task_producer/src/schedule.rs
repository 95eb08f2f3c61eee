//! `task_producer run`: the original's schedule, `per_tick` demands every `every`, until shutdown.
//!
//! A broker outage holds the tick in progress (the publisher reconnects with backoff and
//! publishes again what was not confirmed); after it, ticks resume at the normal pace rather
//! than catching up in a rush.

use std::time::Duration;

use pp_lib::amqp::{Outgoing, PublishOptions, Publisher, Reconnect};
use pp_lib::shutdown::Shutdown;

use crate::settings::ScheduleSettings;

/// Publishes on the schedule until shutdown; returns how many demands the broker confirmed.
pub async fn run_until_stopped(
    settings: ScheduleSettings,
    shutdown: Shutdown,
) -> Result<u64, pp_lib::Error> {
    let ScheduleSettings {
        amqp,
        every,
        per_tick,
        add_up_to,
    } = settings;
    // A tick of many demands stops early on shutdown, after confirming what is in flight.
    let mut publisher = Publisher::new(crate::broker(&amqp)).stopping_on(shutdown.clone());
    publisher.check_features().await?;
    let options = PublishOptions::new(Reconnect::UntilShutdown(shutdown.clone()));
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut published: u64 = 0;
    let mut refused = None;
    log::info!("publishing {per_tick} demand(s) every {every:?}; Ctrl-C stops");
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.requested() => break,
        }
        let batch: Vec<Outgoing> = (0..per_tick)
            .map(|_| Outgoing::demand(&crate::demand(add_up_to)))
            .collect();
        let outcome = publisher
            .publish(batch, &options, |message| {
                log::info!(
                    "published demand {} {}",
                    message.id,
                    String::from_utf8_lossy(&message.body)
                );
            })
            .await;
        match outcome {
            Ok(count) => published += count,
            Err(error) => {
                published += error.confirmed;
                if shutdown.is_requested() {
                    log::info!("stopping before the broker came back: {}", error.reason);
                    break;
                }
                // No retry mends a queue that exists with another type.
                if matches!(error.reason, pp_lib::Error::Config(_)) {
                    refused = Some(error.reason);
                    break;
                }
                log::error!("publishing failed: {error}");
            }
        }
    }
    publisher.close().await;
    log::info!("stopped after publishing {published} demand(s)");
    refused.map_or(Ok(published), Err)
}
