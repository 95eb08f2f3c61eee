//! The overview: every figure of the dashboard's first page, read from PostgreSQL and RabbitMQ.
//!
//! It is computed at most once per [`FRESH_FOR`] per API process and shared by every request in
//! that time: five tabs polling every two seconds cost what one does, and so do fifty. The
//! database part is one read-only transaction of cheap statements (see `pp_lib::db::stats`,
//! `dashboard` and `throughput`), under a statement timeout of its own; the broker part is two
//! passive declares. Either may fail alone: a broker that is down is part of the answer
//! ("down, because …"), a database that is down makes the answer a 503.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use pp_lib::amqp::dead_letter_queue::QueueDepth;
use pp_lib::db::PgConnection;
use pp_lib::db::backlogs::{Backlogs, read_backlogs};
use pp_lib::db::stats::{Counting, Figures, read_figures_with};
use pp_lib::db::throughput::finished_per_second;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::auth::admin::ActionAccess;
use crate::dashboard::broker::DashboardBroker;
use crate::error::ApiError;
use crate::state::AppState;

/// How long a computed overview is served before the next is computed.
pub const FRESH_FOR: Duration = Duration::from_secs(1);

/// Seconds of the throughput chart.
pub const CHART_SECONDS: i64 = 15 * 60;

/// Longest any statement of the overview may run: a dashboard must never weigh on the database.
const STATEMENT_TIMEOUT: &str = "2s";

/// Everything the overview page shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// When it was computed (epoch milliseconds, the API's clock).
    pub generated_at_ms: i64,
    /// Counts of works and events: exact while the tables are small, estimates beyond (each
    /// says which).
    pub works: Figures,
    pub throughput: Throughput,
    pub backlogs: Backlogs,
    /// The sweeper's window (`PP_SWEEP_WINDOW`, as this API reads it), in seconds.
    pub sweep_window_seconds: u64,
    /// The same window as the settings write durations (`6h`, `1h30m`).
    #[schema(example = "6h")]
    pub sweep_window: String,
    pub broker: BrokerOverview,
    /// What the dashboard's actions need.
    pub actions: ActionAccess,
}

/// Works finished per second.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Throughput {
    /// The epoch second after the last one counted (the current second, still being counted).
    pub end: i64,
    /// One count per second, oldest first: the last 15 minutes.
    pub finished_per_second: Vec<i64>,
}

/// RabbitMQ as the API sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BrokerOverview {
    /// `up`, or `down` with the reason in `error`.
    pub status: BrokerStatus,
    /// The work queue (null while RabbitMQ is down).
    pub queue: Option<QueueDepth>,
    /// The dead-letter queue (null while RabbitMQ is down).
    pub dead_letters: Option<QueueDepth>,
    /// Why RabbitMQ cannot be read (null while it is up).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BrokerStatus {
    Up,
    Down,
}

/// The last overview computed, and when.
#[derive(Default)]
pub struct OverviewCache {
    last: Mutex<Option<(Instant, Arc<Overview>)>>,
}

impl OverviewCache {
    /// The overview: the last one while it is fresh, else a new one. Concurrent requests wait for
    /// the one being computed rather than compute their own.
    pub async fn get(
        &self,
        state: &AppState,
        broker: &DashboardBroker,
        sweep_window: Duration,
        actions: ActionAccess,
    ) -> Result<Arc<Overview>, ApiError> {
        let mut last = self.last.lock().await;
        if let Some((at, overview)) = last.as_ref()
            && at.elapsed() < FRESH_FOR
        {
            return Ok(overview.clone());
        }
        let database = state.run_db(move |conn| Ok(read_database(conn, sweep_window)?));
        let (database, depths) = tokio::join!(database, broker.depths());
        let database = database?;
        let broker = match depths {
            Ok((queue, dead_letters)) => BrokerOverview {
                status: BrokerStatus::Up,
                queue: Some(queue),
                dead_letters: Some(dead_letters),
                error: None,
            },
            Err(reason) => BrokerOverview {
                status: BrokerStatus::Down,
                queue: None,
                dead_letters: None,
                error: Some(reason),
            },
        };
        let overview = Arc::new(Overview {
            generated_at_ms: chrono::Utc::now().timestamp_millis(),
            works: database.works,
            throughput: database.throughput,
            backlogs: database.backlogs,
            sweep_window_seconds: sweep_window.as_secs(),
            sweep_window: pp_lib::config::format_duration(sweep_window),
            broker,
            actions,
        });
        *last = Some((Instant::now(), overview.clone()));
        Ok(overview)
    }
}

/// What the overview reads from PostgreSQL.
pub struct DatabaseOverview {
    pub works: Figures,
    pub throughput: Throughput,
    pub backlogs: Backlogs,
}

/// Reads the database's part of the overview in one read-only transaction, every statement
/// bounded by [`STATEMENT_TIMEOUT`]. `make bench-dashboard` times each of them on a million works.
pub fn read_database(
    conn: &mut PgConnection,
    sweep_window: Duration,
) -> diesel::QueryResult<DatabaseOverview> {
    conn.transaction(|conn| {
        conn.batch_execute(&format!(
            "set transaction read only; set local statement_timeout = '{STATEMENT_TIMEOUT}'"
        ))?;
        let works = read_figures_with(conn, Counting::DEFAULT)?;
        let series = finished_per_second(conn, CHART_SECONDS)?;
        let backlogs = read_backlogs(conn, sweep_window, Counting::DEFAULT)?;
        Ok(DatabaseOverview {
            works,
            throughput: Throughput {
                end: series.end,
                finished_per_second: series.counts,
            },
            backlogs,
        })
    })
}
