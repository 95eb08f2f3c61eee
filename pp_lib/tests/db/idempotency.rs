//! Idempotency keys: one work per key, replays, conflicts, expiry and concurrent retries.

use std::collections::HashSet;
use std::time::Duration;

use diesel::prelude::*;
use pp_lib::db::idempotency::{IdempotentCreation, create_work_once, purge_expired_keys};
use pp_lib::work::NewWork;
use pp_storage::testkit::TestDatabase;

/// How long the tests' keys are remembered: a day, like the API's default.
const KEY_TTL: Duration = Duration::from_secs(24 * 60 * 60);

fn work_count(conn: &mut PgConnection) -> i64 {
    pp_lib::schema::works::table
        .count()
        .get_result(conn)
        .expect("count")
}

fn expire_every_key(conn: &mut PgConnection) {
    diesel::sql_query(
        "update idempotency_keys set created_on = now() - interval '2 days', \
         expires_on = now() - interval '1 day'",
    )
    .execute(conn)
    .expect("expire");
}

#[test]
fn a_retry_with_the_same_request_gets_the_first_work() {
    let db = TestDatabase::create();
    let mut conn = db.connect();

    let first = create_work_once(
        &mut conn,
        "k1",
        "add_up_to=4",
        &NewWork::from_api(4),
        KEY_TTL,
    )
    .expect("first");
    let retry = create_work_once(
        &mut conn,
        "k1",
        "add_up_to=4",
        &NewWork::from_api(4),
        KEY_TTL,
    )
    .expect("retry");

    let IdempotentCreation::Created(work) = first else {
        panic!("{first:?}")
    };
    assert_eq!(retry, IdempotentCreation::Replayed(work));
    assert_eq!(work_count(&mut conn), 1);
}

#[test]
fn the_same_key_with_another_request_is_a_conflict() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    create_work_once(
        &mut conn,
        "k2",
        "add_up_to=4",
        &NewWork::from_api(4),
        KEY_TTL,
    )
    .expect("first");

    let other = create_work_once(
        &mut conn,
        "k2",
        "add_up_to=5",
        &NewWork::from_api(5),
        KEY_TTL,
    )
    .expect("second");

    assert_eq!(
        other,
        IdempotentCreation::Conflict {
            first_request: "add_up_to=4".to_owned()
        }
    );
    assert_eq!(
        work_count(&mut conn),
        1,
        "the conflicting request created nothing"
    );
}

#[test]
fn an_expired_key_can_be_used_again_and_is_purged() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    create_work_once(
        &mut conn,
        "k3",
        "add_up_to=4",
        &NewWork::from_api(4),
        KEY_TTL,
    )
    .expect("first");
    create_work_once(
        &mut conn,
        "k4",
        "add_up_to=4",
        &NewWork::from_api(4),
        KEY_TTL,
    )
    .expect("other");
    expire_every_key(&mut conn);

    let again = create_work_once(
        &mut conn,
        "k3",
        "add_up_to=9",
        &NewWork::from_api(9),
        KEY_TTL,
    )
    .expect("after expiry");
    assert!(
        matches!(again, IdempotentCreation::Created(ref work) if work.add_up_to == 9),
        "{again:?}"
    );

    assert_eq!(
        purge_expired_keys(&mut conn, 100).expect("purge"),
        1,
        "k4 expired, k3 is new"
    );
    assert_eq!(purge_expired_keys(&mut conn, 100).expect("purge"), 0);
}

#[test]
fn concurrent_retries_create_one_work() {
    let db = TestDatabase::create();
    let pool = db.pool();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let pool = pool.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conn = pool.get().expect("connection");
                barrier.wait();
                create_work_once(
                    &mut conn,
                    "race",
                    "add_up_to=7",
                    &NewWork::from_api(7),
                    Duration::from_secs(60),
                )
                .expect("create")
            })
        })
        .collect();
    let outcomes: Vec<IdempotentCreation> = racers
        .into_iter()
        .map(|racer| racer.join().expect("thread"))
        .collect();

    let ids: HashSet<i64> = outcomes
        .iter()
        .map(|outcome| match outcome {
            IdempotentCreation::Created(work) | IdempotentCreation::Replayed(work) => work.id,
            IdempotentCreation::Conflict { .. } => panic!("{outcome:?}"),
        })
        .collect();
    assert_eq!(ids.len(), 1, "{outcomes:?}");
    let created = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, IdempotentCreation::Created(_)))
        .count();
    assert_eq!(created, 1);
    assert_eq!(work_count(&mut pool.get().expect("connection")), 1);
}
