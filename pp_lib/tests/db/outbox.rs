//! The demand outbox: committed demands, claimed by one relay at a time, marked once confirmed.

use std::collections::HashSet;

use diesel::prelude::*;
use pp_lib::db::outbox::{claim_unpublished, find_demand, insert_demand, mark_published};
use pp_lib::demand::WorkDemand;
use pp_storage::testkit::TestDatabase;
use uuid::Uuid;

#[test]
fn a_demand_is_stored_with_the_originals_body() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let id = Uuid::new_v4();

    let stored = insert_demand(&mut conn, id, &WorkDemand::new(2).expect("valid")).expect("insert");

    assert_eq!(stored.id, id);
    assert_eq!(
        stored.body,
        serde_json::json!({"add_up_to": 2, "done": false})
    );
    assert_eq!(stored.published_on, None);
    assert_eq!(find_demand(&mut conn, id).expect("query"), Some(stored));
}

#[test]
fn relays_claim_disjoint_batches_and_published_rows_are_not_claimed_again() {
    let db = TestDatabase::create();
    let mut first = db.connect();
    let mut second = db.connect();
    for n in 0..5 {
        insert_demand(
            &mut first,
            Uuid::new_v4(),
            &WorkDemand::new(n).expect("valid"),
        )
        .expect("insert");
    }

    let (mine, theirs) = first
        .transaction(|first| {
            let mine = claim_unpublished(first, 3)?;
            let theirs = second.transaction(|second| claim_unpublished(second, 10))?;
            QueryResult::Ok((mine, theirs))
        })
        .expect("claims");
    assert_eq!((mine.len(), theirs.len()), (3, 2));
    let ids: HashSet<Uuid> = mine.iter().chain(&theirs).map(|demand| demand.id).collect();
    assert_eq!(ids.len(), 5);

    let confirmed: Vec<Uuid> = mine.iter().map(|demand| demand.id).collect();
    assert_eq!(mark_published(&mut first, &confirmed).expect("mark"), 3);
    assert_eq!(
        mark_published(&mut first, &confirmed).expect("mark again"),
        0,
        "once"
    );
    let left = first
        .transaction(|conn| claim_unpublished(conn, 10))
        .expect("claim");
    let left: HashSet<Uuid> = left.iter().map(|demand| demand.id).collect();
    let expected: HashSet<Uuid> = theirs.iter().map(|demand| demand.id).collect();
    assert_eq!(left, expected);
}
