//! Queries on `events`.

use diesel::prelude::*;

use crate::event::{Event, NewEvent};
use crate::schema::events;

/// Inserts events and returns them as stored, in the order given.
pub fn insert_events(conn: &mut PgConnection, new_events: &[NewEvent]) -> QueryResult<Vec<Event>> {
    diesel::insert_into(events::table)
        .values(new_events)
        .returning(Event::as_returning())
        .get_results(conn)
}

/// The events of one work, oldest first.
pub fn list_events(conn: &mut PgConnection, work_id: i64) -> QueryResult<Vec<Event>> {
    events::table
        .select(Event::as_select())
        .filter(events::work_id.eq(work_id))
        .order((events::created_on.asc(), events::id.asc()))
        .load(conn)
}
