//! pp_lib's data layer against a real PostgreSQL (each test gets its own migrated database),
//! and its Redis side against a real Redis (each test gets its own key prefix).

mod cache;
mod events;
mod idempotency;
mod outbox;
mod pool;
mod publishing;
mod sweeper;
mod testkit;
mod works;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use pp_lib::db::works::insert_work;
use pp_lib::work::{NewWork, Work};

/// Inserts an API work with a given code and `add_up_to`.
pub fn insert_api_work(conn: &mut PgConnection, code: &str, add_up_to: i32) -> Work {
    insert_work(
        conn,
        &NewWork {
            work_code: code.to_owned(),
            add_up_to,
            demand_id: None,
        },
    )
    .unwrap_or_else(|error| panic!("inserting {code}: {error}"))
}

/// Moves a work's creation time, to place it inside or outside a time window.
pub fn set_created_on(conn: &mut PgConnection, id: i64, at: DateTime<Utc>) {
    use pp_lib::schema::works;
    diesel::update(works::table.find(id))
        .set(works::created_on.eq(at))
        .execute(conn)
        .expect("moving created_on");
}
