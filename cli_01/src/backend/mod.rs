//! The two ways of asking pp, behind one trait: [`http::HttpBackend`] calls the API,
//! [`db::DbBackend`] runs pp_lib's queries on PostgreSQL. Both speak pp_lib's
//! [`contract`](pp_lib::contract) — the same request and answer types ([`Work`], [`Event`],
//! [`Stats`], [`DemandAccepted`], [`DemandProgress`]), the same not-found rule — so they give the same answers.

pub mod db;
pub mod http;

use std::time::Duration;

use clap::ValueEnum;
use pp_lib::auth::Secret;
use pp_lib::config::DatabaseConfig;
use pp_lib::contract::search::SearchQuery;
use pp_lib::contract::{DemandAccepted, DemandProgress};
use pp_lib::db::stats::Stats;
use pp_lib::event::Event;
use pp_lib::work::Work;

use crate::error::Error;

/// Where the answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// The pp API (--api-url, PP_API_URL).
    Http,
    /// PostgreSQL (--database-url, DATABASE_URL).
    Db,
}

/// The questions cli_01 asks, each answered the same way by both backends.
pub trait Backend {
    /// The work with this id; not found when there is none.
    fn get_work(&mut self, id: i64) -> Result<Work, Error>;
    /// The works `query` describes, in id order.
    fn search_works(&mut self, query: &SearchQuery) -> Result<Vec<Work>, Error>;
    /// The events of the work with this id, oldest first; not found when there is no such work.
    fn list_events(&mut self, id: i64) -> Result<Vec<Event>, Error>;
    /// Counts of works and events, and the last hour's throughput.
    fn read_stats(&mut self) -> Result<Stats, Error>;
    /// Creates a work; `add_up_to` is random in 1..100 when not given.
    fn create_work(&mut self, add_up_to: Option<i32>) -> Result<Work, Error>;
    /// Accepts a work demand into the outbox; `add_up_to` is random in 1..100 when not given.
    fn create_demand(&mut self, add_up_to: Option<i32>) -> Result<DemandAccepted, Error>;
    /// What became of the demand with this message id: its work, or where it is; not found
    /// when no demand has it. With a `wait`, as soon as its work is recorded, or once the wait
    /// is over.
    fn follow_demand(
        &mut self,
        message_id: uuid::Uuid,
        wait: Option<Duration>,
    ) -> Result<DemandProgress, Error>;
}

/// What [`connect`] needs to reach either way.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The API's base URL, checked (for [`Via::Http`]).
    pub api_url: &'a str,
    /// The API key to send (for [`Via::Http`]).
    pub api_key: Option<&'a Secret>,
    /// Longest an HTTP call may take, connecting included.
    pub timeout: Duration,
    /// PostgreSQL (for [`Via::Db`]).
    pub database: &'a DatabaseConfig,
    /// The sweeper's window, for the stats read from PostgreSQL (for [`Via::Db`]).
    pub sweep_window: Duration,
}

/// The backend `via` names, ready to ask: the HTTP client built, or the database connected.
pub fn connect(via: Via, target: Target<'_>) -> Result<Box<dyn Backend>, Error> {
    Ok(match via {
        Via::Http => Box::new(http::HttpBackend::new(
            target.api_url,
            target.api_key,
            target.timeout,
        )?),
        Via::Db => Box::new(db::DbBackend::connect(
            target.database,
            target.sweep_window,
        )?),
    })
}
