//! The sweeper's window, read by every process that must agree on it: the consumer's sweeper
//! (and `task_consumer sweep`) finishes the pending API works created within it; the API's
//! `/stats` and dashboard, and `cli_01 stats --via db`, count the ones created before it, which
//! no sweep will take.

use std::time::Duration;

use crate::config::duration_setting;

/// The sweeper's window (`PP_SWEEP_WINDOW`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct SweepWindow {
    /// Pending API works created within this window are swept (the original's "last 6 hours");
    /// those created before it never are, and /stats, the dashboard and cli_01 stats count them.
    #[arg(
        id = "sweep_window",
        long = "sweep-window",
        env = "PP_SWEEP_WINDOW",
        default_value = "6h",
        value_parser = duration_setting
    )]
    pub duration: Duration,
}

impl Default for SweepWindow {
    fn default() -> Self {
        crate::config::defaults()
    }
}
