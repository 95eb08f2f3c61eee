//! The event log: ordering, one row per step, known variables only, cascade with the work.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use pp_lib::db::events::{insert_events, list_events};
use pp_lib::event::{EventVariable, NewEvent};
use pp_storage::testkit::{TestDatabase, finish_work};

use crate::insert_api_work;

#[test]
fn events_are_listed_oldest_first_for_their_work_only() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-events", 3);
    let other = insert_api_work(&mut conn, "api-other", 3);
    let now = Utc::now();
    // Inserted out of order: the listing sorts by time.
    insert_events(
        &mut conn,
        &[
            NewEvent::new(&work, EventVariable::ComputeResult, "6".to_owned(), now),
            NewEvent::new(
                &work,
                EventVariable::ComputeStart,
                String::new(),
                now - Duration::seconds(2),
            ),
            NewEvent::new(&other, EventVariable::ComputeStart, String::new(), now),
            NewEvent::new(
                &work,
                EventVariable::ComputeStop,
                String::new(),
                now - Duration::seconds(1),
            ),
        ],
    )
    .expect("insert");

    let listed = list_events(&mut conn, work.id).expect("list");
    let variables: Vec<&str> = listed.iter().map(|event| event.variable.as_str()).collect();
    assert_eq!(
        variables,
        ["compute/start", "compute/stop", "compute/result"]
    );
    assert_eq!(listed[2].value, "6");
    assert_eq!(list_events(&mut conn, other.id).expect("list").len(), 1);
    assert!(list_events(&mut conn, 999_999).expect("list").is_empty());
}

#[test]
fn each_variable_is_logged_once_per_work() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-once", 1);
    let start = NewEvent::new(
        &work,
        EventVariable::ComputeStart,
        String::new(),
        Utc::now(),
    );
    insert_events(&mut conn, std::slice::from_ref(&start)).expect("first start");

    let error = insert_events(&mut conn, &[start]).expect_err("a second start is refused");
    assert!(
        error.to_string().contains("events_one_per_variable"),
        "{error}"
    );
}

#[test]
fn unknown_variables_are_refused() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-unknown", 1);
    let mut event = NewEvent::new(
        &work,
        EventVariable::ComputeStart,
        String::new(),
        Utc::now(),
    );
    event.variable = "compute/guess".to_owned();

    let error = insert_events(&mut conn, &[event]).expect_err("unknown variable");
    assert!(
        error.to_string().contains("events_variable_known"),
        "{error}"
    );
}

#[test]
fn events_go_with_their_work() {
    use pp_lib::schema::{events, works};
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-cascade", 2);
    finish_work(&mut conn, &work);
    assert_eq!(list_events(&mut conn, work.id).expect("list").len(), 3);

    diesel::delete(works::table.find(work.id))
        .execute(&mut conn)
        .expect("delete");
    let left: i64 = events::table.count().get_result(&mut conn).expect("count");
    assert_eq!(left, 0);
}
