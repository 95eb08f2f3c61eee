//! The dashboard: the whole pipeline, live, in a browser, served at `GET /` from this binary.
//!
//! A short tour:
//!
//! - [`assets`]: the page itself (HTML, CSS, a small dependency-free script), compiled into the
//!   binary: no CDN, no build step, nothing fetched from anywhere but this API.
//! - [`routes`]: the JSON endpoints behind the page, under `/dashboard/api/`, documented in the
//!   OpenAPI document like every other route ([`DashboardDoc`]).
//! - [`overview`]: the first page's figures, computed at most once a second and shared by every
//!   tab that polls.
//! - [`broker`]: the dashboard's connection to RabbitMQ (depths, dead letters).
//! - [`login`]: the login page, logging in and out, and who is logged in.
//! - Who may act: [`crate::auth`] decides, and while `PP_AUTH` is off
//!   [`crate::auth::admin`] (`PP_ADMIN_TOKEN`, or this machine).
//!
//! The page polls (every 2 s, paused while its tab is hidden or by its pause button) rather than
//! holding a server-sent event stream: each poll is one cheap, cacheable request that any proxy
//! passes as it is, the overview is computed once per second however many tabs ask, and a tab
//! that is closed or hidden costs nothing, with no connection held per tab.

pub mod assets;
pub mod broker;
pub mod login;
pub mod overview;
pub mod routes;

use std::time::{Duration, Instant};

use pp_lib::amqp::dead_letter_queue::DeadLetterPage;
use pp_lib::config::{AmqpConfig, SweepWindow};
use tokio::sync::Mutex;

use crate::auth::Mode;
use crate::auth::admin::{ActionAccess, ActionPolicy, AdminToken};
use crate::dashboard::broker::DashboardBroker;
use crate::dashboard::overview::OverviewCache;

pub use routes::{DashboardDoc, routes};

/// The dashboard's settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DashboardConfig {
    /// Token the dashboard's actions (enqueue demands, retry or discard dead letters) must carry
    /// in the X-PP-Admin-Token header; at least 16 characters. Unset: actions are allowed only
    /// from this machine, without a proxy in between. Prefer the environment variable: a flag
    /// shows in the process list.
    #[arg(long = "admin-token", env = "PP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<AdminToken>,
    #[command(flatten)]
    pub sweep_window: SweepWindow,
}

impl Default for DashboardConfig {
    /// No admin token, the sweeper's default window.
    fn default() -> Self {
        pp_lib::config::defaults()
    }
}

/// How long a browse of the dead-letter queue is served to other requests.
const BROWSE_FRESH_FOR: Duration = Duration::from_secs(1);

/// What the dashboard's handlers share (beside the API's `AppState`).
pub struct Dashboard {
    /// How the API asks for identities: with `off`, actions follow [`ActionPolicy`]; else the
    /// guard asks for the `operate` scope.
    pub mode: Mode,
    pub policy: ActionPolicy,
    pub sweep_window: Duration,
    pub broker: DashboardBroker,
    pub overview: OverviewCache,
    /// The last browse of the dead-letter queue: (when, its limit, the page).
    browsed: Mutex<Option<(Instant, usize, DeadLetterPage)>>,
}

impl Dashboard {
    /// The dashboard over the queue `amqp` names.
    pub fn new(config: &DashboardConfig, amqp: &AmqpConfig, mode: Mode) -> Self {
        Dashboard {
            mode,
            policy: ActionPolicy::new(config.admin_token.clone()),
            sweep_window: config.sweep_window.duration,
            broker: DashboardBroker::new(amqp),
            overview: OverviewCache::default(),
            browsed: Mutex::new(None),
        }
    }

    /// What the actions need, as the page is told.
    pub fn actions(&self) -> ActionAccess {
        match self.mode {
            Mode::Off => self.policy.access(),
            Mode::Writes | Mode::All => ActionAccess::Scope,
        }
    }

    /// The first `limit` dead letters: browsed now, or the browse of the last second (every tab
    /// on the page shares it, and the queue is browsed once).
    pub async fn dead_letters(&self, limit: usize) -> Result<DeadLetterPage, String> {
        let mut browsed = self.browsed.lock().await;
        if let Some((at, browsed_limit, page)) = browsed.as_ref()
            && at.elapsed() < BROWSE_FRESH_FOR
            && *browsed_limit == limit
        {
            return Ok(page.clone());
        }
        let page = self.broker.browse(limit).await?;
        *browsed = Some((Instant::now(), limit, page.clone()));
        Ok(page)
    }

    /// Forgets the last browse: an action changed the queue.
    pub async fn forget_browse(&self) {
        *self.browsed.lock().await = None;
    }
}
