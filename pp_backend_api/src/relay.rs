//! The outbox relay: publishes the demands `POST /work/demand` committed to `demand_outbox`.
//!
//! It runs inside the API process (switch it off with `--outbox-relay off` where another replica
//! or process relays). Each round, in ONE database transaction, it claims up to `batch`
//! unpublished rows, oldest first, with `FOR UPDATE SKIP LOCKED` (so replicas relaying at once
//! take different rows), publishes them with publisher confirms, marks the confirmed ones
//! published and commits. A crash before the commit leaves the rows unpublished, to be published
//! again: at-least-once, and the consumer's deduplication on `message_id` (the row's id) makes it
//! exactly once in effect. Rounds run when a demand is accepted (the handler wakes the relay) and
//! every `interval` otherwise; a backlog is drained round after round.
//!
//! The broker may be down: demands are still accepted (they wait in the table), the relay logs
//! the outage once and tries again with backoff.

use std::sync::Arc;
use std::time::Duration;

use pp_lib::amqp::{Backoff, Broker, Outgoing, PublishOptions, Publisher, Reconnect, Topology};
use pp_lib::config::{AmqpConfig, positive_duration_setting};
use pp_lib::db::outbox::{claim_unpublished, mark_published};
use pp_lib::db::{PgPool, with_connection};
use pp_lib::demand::WorkDemand;
use pp_lib::outage::Outage;
use pp_lib::shutdown::Shutdown;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// The relay's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayConfig {
    /// Publish the demand outbox from this process: on or off.
    #[arg(
        long = "outbox-relay",
        env = "PP_OUTBOX_RELAY",
        default_value = "on",
        value_parser = parse_switch,
        action = clap::ArgAction::Set
    )]
    pub enabled: bool,
    /// Most outbox rows published per transaction.
    #[arg(long = "outbox-batch", env = "PP_OUTBOX_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub batch: i64,
    /// How often the outbox is checked when no demand arrives (demands wake the relay at once).
    #[arg(long = "outbox-interval", env = "PP_OUTBOX_INTERVAL", default_value = "1s",
          value_parser = positive_duration_setting)]
    pub interval: Duration,
    #[command(flatten)]
    pub amqp: AmqpConfig,
}

impl RelayConfig {
    /// A relay publishing to `amqp`, every other value at its default.
    pub fn to(amqp: AmqpConfig) -> Self {
        RelayConfig {
            enabled: true,
            batch: 500,
            interval: Duration::from_secs(1),
            amqp,
        }
    }

    /// No relay in this process.
    pub fn off() -> Self {
        let url = pp_lib::config::DEFAULT_AMQP_URL
            .parse()
            .expect("the default AMQP URL is valid");
        RelayConfig {
            enabled: false,
            ..RelayConfig::to(AmqpConfig {
                url,
                queue: pp_lib::config::DEFAULT_QUEUE.to_owned(),
                queue_type: pp_lib::config::QueueType::Classic,
            })
        }
    }
}

/// `on`/`off` (also true/false, yes/no, 1/0).
pub fn parse_switch(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("`{text}` is neither on nor off")),
    }
}

/// Longest wait for the broker inside a round (rows stay locked meanwhile).
const PUBLISH_PATIENCE: Duration = Duration::from_secs(2);

/// Relays until shutdown; the round in progress finishes first.
pub async fn relay(
    pool: PgPool,
    config: RelayConfig,
    wakeup: Arc<Notify>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let new_publisher = || {
        Publisher::new(Broker::new(
            config.amqp.url.clone(),
            Topology::from_config(&config.amqp),
            "pp_backend_api outbox relay",
        ))
    };
    let mut publisher = Some(new_publisher());
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut publishing = Outage::new(
        module_path!(),
        "outbox relay: publishing",
        "trying again with backoff",
    );
    log::info!(
        "outbox relay on: publishing to {} on {}",
        config.amqp.queue,
        config.amqp.url
    );
    loop {
        tokio::select! {
            () = wakeup.notified() => {}
            () = tokio::time::sleep(config.interval) => {}
            () = shutdown.requested() => break,
        }
        // Drain: round after round while rounds come back full.
        while !shutdown.is_requested() {
            let mut current = publisher.take().unwrap_or_else(new_publisher);
            // Connect before locking rows, so an outage does not hold them.
            let connected = current
                .ensure_connected(&Reconnect::Within(Duration::ZERO))
                .await;
            metrics
                .outbox_broker_connected
                .set(i64::from(current.is_connected()));
            if connected.is_err() {
                publisher = Some(current);
                shutdown.sleep(backoff.next_delay()).await;
                break;
            }
            let (returned, outcome) = round(pool.clone(), config.batch, current).await;
            publisher = returned;
            match outcome {
                Ok(published) => {
                    backoff.reset();
                    publishing.recovered();
                    metrics.outbox_published.inc_by(published as u64);
                    if (published as i64) < config.batch {
                        break;
                    }
                }
                Err(error) => {
                    if error.is_transient() {
                        publishing.failed(&error);
                    } else {
                        log::error!("outbox relay: {error}");
                    }
                    shutdown.sleep(backoff.next_delay()).await;
                    break;
                }
            }
        }
    }
    if let Some(publisher) = publisher {
        publisher.close().await;
    }
    log::info!("outbox relay stopped");
}

/// One transaction: claim, publish with confirms, mark the confirmed rows, commit. Runs on the
/// blocking pool (it holds a database connection) and drives the publishing from there.
async fn round(
    pool: PgPool,
    batch: i64,
    mut publisher: Publisher,
) -> (Option<Publisher>, Result<usize, pp_lib::Error>) {
    let runtime = tokio::runtime::Handle::current();
    let joined = tokio::task::spawn_blocking(move || {
        let outcome = with_connection(&pool, |conn| {
            use diesel::Connection;
            conn.transaction(|conn| {
                let rows = claim_unpublished(conn, batch)?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let messages: Vec<Outgoing> = rows
                    .iter()
                    .map(|row| Outgoing {
                        id: row.id,
                        body: wire_body(&row.body),
                    })
                    .collect();
                let mut confirmed = Vec::with_capacity(messages.len());
                let options = PublishOptions {
                    window: messages.len(),
                    rate: None,
                    reconnect: Reconnect::Within(PUBLISH_PATIENCE),
                };
                let published =
                    runtime.block_on(
                        publisher.publish(messages, &options, |message| confirmed.push(message.id)),
                    );
                // Whatever the broker confirmed is marked, even if the rest failed.
                mark_published(conn, &confirmed)?;
                match published {
                    Ok(_) => Ok(confirmed.len()),
                    // Commit the marks, report the failure: the rest stays for the next round.
                    Err(error) if !confirmed.is_empty() => {
                        log::warn!("outbox relay: {error}");
                        Ok(confirmed.len())
                    }
                    Err(error) => Err(error.reason),
                }
            })
        });
        (Some(publisher), outcome)
    })
    .await;
    match joined {
        Ok(result) => result,
        // The transaction rolled back; the publisher went with the closure, a new one is made.
        Err(error) => (
            None,
            Err(pp_lib::Error::Broker(format!(
                "a relay round panicked: {error}"
            ))),
        ),
    }
}

/// The exact wire body for a stored demand: the original's `{"add_up_to":n,"done":false}`. A row
/// that is somehow not a valid demand is sent as stored, for the consumer to dead-letter.
fn wire_body(stored: &serde_json::Value) -> Vec<u8> {
    let raw = stored.to_string().into_bytes();
    match WorkDemand::from_json(&raw) {
        Ok(demand) => demand.to_json(),
        Err(_) => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_demands_go_out_in_the_original_shape() {
        let stored = serde_json::json!({"done": false, "add_up_to": 2});
        assert_eq!(wire_body(&stored), br#"{"add_up_to":2,"done":false}"#);
        let odd = serde_json::json!({"x": 1});
        assert_eq!(wire_body(&odd), br#"{"x":1}"#);
    }

    #[test]
    fn the_relay_is_switched_by_flag_or_environment() {
        use clap::Parser;
        let settings =
            crate::settings::Settings::try_parse_from(["pp_backend_api", "--outbox-relay", "off"])
                .expect("off is accepted");
        assert!(!settings.relay.enabled);
        let settings =
            crate::settings::Settings::try_parse_from(["pp_backend_api"]).expect("defaults parse");
        assert!(settings.relay.enabled, "on by default");
        assert!(
            crate::settings::Settings::try_parse_from([
                "pp_backend_api",
                "--outbox-relay",
                "maybe"
            ])
            .is_err()
        );
    }

    #[test]
    fn switches_read_on_and_off() {
        for on in ["on", "ON", "true", "1", "yes"] {
            assert_eq!(parse_switch(on), Ok(true));
        }
        for off in ["off", "false", "0", "no"] {
            assert_eq!(parse_switch(off), Ok(false));
        }
        assert!(parse_switch("maybe").is_err());
    }
}
