//! The consumer's counters, served in Prometheus' text format on a small endpoint of its own.
//!
//! An endpoint rather than log lines: the consumer runs unattended, and rates and alerts
//! (dead-letters rising, retries climbing while the database is down) come from scraping; a
//! summary line is also logged at shutdown. The endpoint answers `GET /metrics` (and
//! `GET /healthz`), one request per connection, with bounded reads: it is for a scraper.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pp_lib::cache::RedisMetrics;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use pp_lib::shutdown::Shutdown;

/// Counters of one consumer process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    redis_registry: Registry,
    /// Demands recorded as new done works.
    pub processed: IntCounter,
    /// Deliveries whose demand id already had a work: acknowledged, nothing written.
    pub duplicates: IntCounter,
    /// Poison messages rejected to the dead-letter queue.
    pub dead_lettered: IntCounter,
    /// Failed attempts to record a batch (the database down or busy), retried.
    pub retries: IntCounter,
    /// Batches the database refused, split in halves to find the demand that causes it.
    pub split_batches: IntCounter,
    /// Deliveries handed back to the broker (requeued) after recording failed for too long.
    pub handed_back: IntCounter,
    /// Connections on which `basic.qos` or `basic.consume` was refused.
    pub consume_setup_failures: IntCounter,
    /// Works the sweeper finished.
    pub swept: IntCounter,
    /// Pending API-created works older than the sweep window, which the sweeper leaves alone.
    pub sweeper_stranded: IntGauge,
    /// Demands per transaction.
    pub batch_size: Histogram,
    /// 1 while connected to the broker.
    pub broker_connected: IntGauge,
    /// Redis's errors and breaker (the sweeper publishes the works it finishes).
    pub redis: RedisMetrics,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> anyhow::Result<IntCounter> {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            Ok(counter)
        };
        let processed = counter(
            "pp_consumer_processed_total",
            "Demands recorded as done works with their events",
        )?;
        let duplicates = counter(
            "pp_consumer_duplicates_skipped_total",
            "Deliveries whose demand already had a work (redeliveries): acknowledged, nothing written",
        )?;
        let dead_lettered = counter(
            "pp_consumer_dead_lettered_total",
            "Messages that can never succeed, rejected to the dead-letter queue",
        )?;
        let retries = counter(
            "pp_consumer_retries_total",
            "Failed attempts to record a batch, retried with backoff",
        )?;
        let split_batches = counter(
            "pp_consumer_split_batches_total",
            "Batches the database refused, split in halves to find the demand that causes it",
        )?;
        let handed_back = counter(
            "pp_consumer_handed_back_total",
            "Deliveries handed back to RabbitMQ (requeued, not acked) after recording failed for longer than --retry-for",
        )?;
        let consume_setup_failures = counter(
            "pp_consumer_consume_setup_failures_total",
            "Connections on which RabbitMQ refused basic.qos or basic.consume",
        )?;
        let swept = counter(
            "pp_consumer_sweeper_works_total",
            "API-created works the sweeper claimed and finished",
        )?;
        let sweeper_stranded = IntGauge::new(
            "pp_consumer_sweeper_works_older_than_window",
            "Pending API-created works older than the sweep window: the sweeper leaves them (task_consumer sweep --all-pending finishes them)",
        )?;
        registry.register(Box::new(sweeper_stranded.clone()))?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("pp_consumer_batch_size", "Demands recorded per transaction")
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
        )?;
        registry.register(Box::new(batch_size.clone()))?;
        let broker_connected = IntGauge::new(
            "pp_consumer_broker_connected",
            "1 while the consumer is connected to RabbitMQ",
        )?;
        registry.register(Box::new(broker_connected.clone()))?;
        // Named like the API's, under this process's prefix.
        let redis_registry = Registry::new_custom(Some("pp_consumer".to_owned()), None)?;
        let redis = RedisMetrics::register(&redis_registry)?;
        Ok(Metrics {
            registry,
            redis_registry,
            processed,
            duplicates,
            dead_lettered,
            retries,
            split_batches,
            handed_back,
            consume_setup_failures,
            swept,
            sweeper_stranded,
            batch_size,
            broker_connected,
            redis,
        })
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(
            &[self.registry.gather(), self.redis_registry.gather()].concat(),
            &mut out,
        ) {
            log::error!("cannot encode the metrics: {error}");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        format!(
            "processed {}, duplicates skipped {}, dead-lettered {}, retries {}, swept {}",
            self.processed.get(),
            self.duplicates.get(),
            self.dead_lettered.get(),
            self.retries.get(),
            self.swept.get()
        )
    }
}

/// Longest a scraper may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// Binds the endpoint; serve it with [`serve`].
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for metrics on {addr} (use --metrics-addr off to run without)")
    })
}

/// Answers scrapes until shutdown.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.requested() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(error) = answer(stream, &metrics).await {
                        log::debug!("metrics request failed: {error}");
                    }
                });
            }
            Err(error) => {
                log::warn!("metrics endpoint cannot accept: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: tokio::net::TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0_u8; 1024];
    let read = async {
        while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < MAX_REQUEST {
            let n = stream.read(&mut buffer).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buffer[..n]);
        }
        Ok::<(), std::io::Error>(())
    };
    if tokio::time::timeout(READ_TIMEOUT, read).await.is_err() {
        return Ok(());
    }
    let request_line = head.split(|byte| *byte == b'\r').next().unwrap_or_default();
    let (status, content_type, body) = match request_line {
        line if line.starts_with(b"GET /metrics ") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        line if line.starts_with(b"GET /healthz ") => {
            ("200 OK", "text/plain; charset=utf-8", "ok\n".to_owned())
        }
        line if line.starts_with(b"GET ") => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "try /metrics\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET only\n".to_owned(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
