//! Straight from PostgreSQL, with pp_lib's queries and contract: the very functions the API
//! runs, so the answers are the API's without the API.
//!
//! One connection is enough for one command: no pool, so an unreachable server fails at once
//! (within `--db-connect-timeout`) instead of after a pool's retries. The connection gets the
//! same `statement_timeout` a pooled one would.

use chrono::Utc;
use diesel::connection::SimpleConnection;
use pp_lib::config::DatabaseConfig;
use pp_lib::contract::search::SearchQuery;
use pp_lib::contract::{self, DemandAccepted, DemandProgress};
use pp_lib::db::PgConnection;
use pp_lib::db::announce::announce;
use pp_lib::db::outbox::OUTBOX_ADDED;
use pp_lib::db::stats::{Stats, read_stats};
use pp_lib::db::works::{WORKS_DONE, WORKS_PENDING, insert_work, search_works};
use pp_lib::event::Event;
use pp_lib::work::{NewWork, Work};

use crate::backend::Backend;
use crate::error::Error;

/// A connection to pp's database.
pub struct DbBackend {
    conn: PgConnection,
    sweep_window: std::time::Duration,
}

impl DbBackend {
    /// Connects, within the configured connect timeout.
    pub fn connect(
        config: &DatabaseConfig,
        sweep_window: std::time::Duration,
    ) -> Result<Self, Error> {
        let mut conn = pp_lib::db::establish(&config.url, config.connect_timeout)?;
        let millis = config.statement_timeout.as_millis();
        conn.batch_execute(&format!("set statement_timeout = {millis}"))?;
        Ok(DbBackend { conn, sweep_window })
    }
}

impl DbBackend {
    /// Returns once PostgreSQL announced a finished work on this listening connection, or at
    /// `deadline`. libpq reads notifications without blocking: looked at every 10 ms.
    fn await_announcement(&mut self, deadline: std::time::Instant) -> Result<(), Error> {
        while std::time::Instant::now() < deadline {
            let mut heard = false;
            for notification in self.conn.notifications_iter() {
                notification?;
                heard = true;
            }
            if heard {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }
}

impl Backend for DbBackend {
    fn get_work(&mut self, id: i64) -> Result<Work, Error> {
        Ok(contract::get_work(&mut self.conn, id)?)
    }

    fn search_works(&mut self, query: &SearchQuery) -> Result<Vec<Work>, Error> {
        let search = query.to_work_search(Utc::now());
        Ok(search_works(&mut self.conn, &search)?)
    }

    fn list_events(&mut self, id: i64) -> Result<Vec<Event>, Error> {
        Ok(contract::list_work_events(&mut self.conn, id)?)
    }

    fn read_stats(&mut self) -> Result<Stats, Error> {
        Ok(read_stats(&mut self.conn, self.sweep_window)?)
    }

    fn create_work(&mut self, add_up_to: Option<i32>) -> Result<Work, Error> {
        let demand = contract::demand_for(add_up_to).map_err(pp_lib::Error::from)?;
        let work = insert_work(&mut self.conn, &NewWork::from_api(demand.add_up_to()))?;
        // Committed: a listening sweeper finishes it at once, as one created over HTTP.
        announce(&mut self.conn, &[WORKS_PENDING])?;
        Ok(work)
    }

    fn create_demand(&mut self, add_up_to: Option<i32>) -> Result<DemandAccepted, Error> {
        let demand = contract::demand_for(add_up_to).map_err(pp_lib::Error::from)?;
        let accepted = contract::accept_demand(&mut self.conn, &demand)?;
        // Committed: a listening relay publishes it at once, as one accepted over HTTP.
        announce(&mut self.conn, &[OUTBOX_ADDED])?;
        Ok(accepted)
    }

    fn follow_demand(
        &mut self,
        message_id: uuid::Uuid,
        wait: Option<std::time::Duration>,
    ) -> Result<DemandProgress, Error> {
        let Some(wait) = wait else {
            return Ok(contract::follow_demand(&mut self.conn, message_id)?);
        };
        // Listening first: a work recorded after the first look is announced, never missed.
        self.conn.batch_execute(&format!("listen {WORKS_DONE}"))?;
        let deadline = std::time::Instant::now() + wait;
        loop {
            let progress = contract::follow_demand(&mut self.conn, message_id)?;
            if matches!(progress, DemandProgress::Recorded(_))
                || std::time::Instant::now() >= deadline
            {
                return Ok(progress);
            }
            self.await_announcement(deadline)?;
        }
    }
}
