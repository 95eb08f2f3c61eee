//! The two ways of asking pp, behind one trait: [`http::HttpBackend`] calls the API,
//! [`db::DbBackend`] runs pp_lib's queries on PostgreSQL. Both return the same types (pp_lib's
//! [`Work`], [`Event`] and [`Stats`], which are also the API's JSON), the same errors for the
//! same situations, and so the same answers.

pub mod db;
pub mod http;

use std::time::Duration;

use pp_lib::db::stats::Stats;
use pp_lib::event::Event;
use pp_lib::work::Work;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cli::{Cli, Via};
use crate::error::Error;

/// What `search` asks, already checked by the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// Works whose code starts with this text, taken literally.
    pub prefix: String,
    /// Works created at most this long ago.
    pub since: Duration,
    /// Only done (or only pending) works, when set.
    pub done: Option<bool>,
    /// At most this many works, 1 to 1000.
    pub limit: i64,
}

/// The answer to an accepted work demand: the API's `202` body, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemandAccepted {
    /// The AMQP message id the demand is (or will be) published with; the work the consumer
    /// makes of it carries it as `demand_id`.
    pub message_id: Uuid,
    pub add_up_to: i32,
    /// Always false: the demand waits for the consumer.
    pub done: bool,
}

/// The questions cli_01 asks, each answered the same way by both backends.
pub trait Backend {
    /// The work with this id; [`Error::NotFound`] when there is none.
    fn get_work(&mut self, id: i64) -> Result<Work, Error>;
    /// The works `query` describes, in id order.
    fn search_works(&mut self, query: &SearchQuery) -> Result<Vec<Work>, Error>;
    /// The events of the work with this id, oldest first; [`Error::NotFound`] when there is no
    /// such work.
    fn list_events(&mut self, id: i64) -> Result<Vec<Event>, Error>;
    /// Counts of works and events, and the last hour's throughput.
    fn read_stats(&mut self) -> Result<Stats, Error>;
    /// Creates a work; `add_up_to` is random in 1..100 when not given.
    fn create_work(&mut self, add_up_to: Option<i32>) -> Result<Work, Error>;
    /// Accepts a work demand into the outbox; `add_up_to` is random in 1..100 when not given.
    fn create_demand(&mut self, add_up_to: Option<i32>) -> Result<DemandAccepted, Error>;
}

/// The backend `--via` names, ready to ask: the HTTP client built, or the database connected.
pub fn connect(cli: &Cli) -> Result<Box<dyn Backend>, Error> {
    Ok(match cli.via {
        Via::Http => Box::new(http::HttpBackend::new(&cli.api.url, cli.timeout)?),
        Via::Db => Box::new(db::DbBackend::connect(&cli.database)?),
    })
}
