//! Straight from PostgreSQL, with pp_lib's queries: the very functions the API runs, so the
//! answers are the API's without the API.
//!
//! One connection is enough for one command: no pool, so an unreachable server fails at once
//! (within `--db-connect-timeout`) instead of after a pool's retries. The connection gets the
//! same `statement_timeout` a pooled one would.

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use pp_lib::config::DatabaseConfig;
use pp_lib::db::PgConnection;
use pp_lib::db::events::list_events;
use pp_lib::db::outbox::insert_demand;
use pp_lib::db::stats::{Stats, read_stats};
use pp_lib::db::works::{WorkSearch, find_work, insert_work, search_works};
use pp_lib::demand::WorkDemand;
use pp_lib::event::Event;
use pp_lib::work::{NewWork, Work};
use uuid::Uuid;

use crate::backend::{Backend, DemandAccepted, SearchQuery};
use crate::error::Error;

/// A connection to pp's database.
pub struct DbBackend {
    conn: PgConnection,
}

impl DbBackend {
    /// Connects, within the configured connect timeout.
    pub fn connect(config: &DatabaseConfig) -> Result<Self, Error> {
        let mut conn = pp_lib::db::establish(&config.url, config.connect_timeout)?;
        let millis = config.statement_timeout.as_millis();
        conn.batch_execute(&format!("set statement_timeout = {millis}"))?;
        Ok(DbBackend { conn })
    }
}

/// The same text as the API's 404, so both ways fail alike.
fn no_such_work(id: i64) -> Error {
    Error::NotFound(format!("no work with id {id}"))
}

/// The start of a search window that reaches `since` back from now, as the API computes it: no
/// work predates the epoch, so a longer window is the same search.
fn window_start(since: std::time::Duration, now: DateTime<Utc>) -> DateTime<Utc> {
    chrono::Duration::from_std(since)
        .ok()
        .and_then(|window| now.checked_sub_signed(window))
        .map_or(DateTime::UNIX_EPOCH, |start| {
            start.max(DateTime::UNIX_EPOCH)
        })
}

/// A demand for `add_up_to`, or a random one, as the API draws it.
fn demand_for(add_up_to: Option<i32>) -> Result<WorkDemand, Error> {
    match add_up_to {
        Some(add_up_to) => Ok(WorkDemand::new(add_up_to).map_err(pp_lib::Error::from)?),
        None => Ok(WorkDemand::random()),
    }
}

impl Backend for DbBackend {
    fn get_work(&mut self, id: i64) -> Result<Work, Error> {
        find_work(&mut self.conn, id)?.ok_or_else(|| no_such_work(id))
    }

    fn search_works(&mut self, query: &SearchQuery) -> Result<Vec<Work>, Error> {
        let search = WorkSearch {
            done: query.done,
            limit: query.limit,
            ..WorkSearch::new(&query.prefix, window_start(query.since, Utc::now()))
        };
        Ok(search_works(&mut self.conn, &search)?)
    }

    fn list_events(&mut self, id: i64) -> Result<Vec<Event>, Error> {
        let events = list_events(&mut self.conn, id)?;
        // No events: a pending work, or no work at all; only then is a second look needed.
        if events.is_empty() && find_work(&mut self.conn, id)?.is_none() {
            return Err(no_such_work(id));
        }
        Ok(events)
    }

    fn read_stats(&mut self) -> Result<Stats, Error> {
        Ok(read_stats(&mut self.conn)?)
    }

    fn create_work(&mut self, add_up_to: Option<i32>) -> Result<Work, Error> {
        let add_up_to = demand_for(add_up_to)?.add_up_to();
        Ok(insert_work(&mut self.conn, &NewWork::from_api(add_up_to))?)
    }

    fn create_demand(&mut self, add_up_to: Option<i32>) -> Result<DemandAccepted, Error> {
        let demand = demand_for(add_up_to)?;
        let message_id = Uuid::new_v4();
        insert_demand(&mut self.conn, message_id, &demand)?;
        Ok(DemandAccepted {
            message_id,
            add_up_to: demand.add_up_to(),
            done: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;

    #[test]
    fn windows_start_since_ago_and_never_before_the_epoch() {
        let now = Utc
            .timestamp_opt(1_800_000_000, 0)
            .single()
            .expect("a valid instant");
        let cases = [
            (Duration::ZERO, now),
            (Duration::from_secs(3_600), now - chrono::Duration::hours(1)),
            (Duration::from_secs(1_800_000_000), DateTime::UNIX_EPOCH),
            (Duration::from_secs(4_000_000_000), DateTime::UNIX_EPOCH),
            (Duration::MAX, DateTime::UNIX_EPOCH),
        ];
        for (since, expected) in cases {
            assert_eq!(window_start(since, now), expected, "{since:?}");
        }
    }

    #[test]
    fn demands_are_checked_or_random() {
        assert_eq!(demand_for(Some(4)).ok().map(|d| d.add_up_to()), Some(4));
        let error = demand_for(Some(-1)).err().map(|error| error.to_string());
        assert_eq!(
            error.as_deref(),
            Some("add_up_to must be zero or more, got -1")
        );
        let random = demand_for(None).map(|d| d.add_up_to()).ok();
        assert!(random.is_some_and(|n| pp_lib::demand::RANDOM_ADD_UP_TO.contains(&n)));
    }
}
