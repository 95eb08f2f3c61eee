//! Works: insert and find, the table's constraints, prefix search (literal, windowed, paged,
//! indexed) and completion with its three events.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use pp_lib::db::works::{
    Completion, SEARCH_DEFAULT_LIMIT, WorkSearch, complete_work, find_work, insert_work,
    mark_work_done, search_works,
};
use pp_lib::work::{NewWork, WorkOrigin};
use pp_storage::testkit::TestDatabase;
use uuid::Uuid;

use crate::{insert_api_work, set_created_on};

fn codes(works: &[pp_lib::work::Work]) -> Vec<&str> {
    works.iter().map(|work| work.work_code.as_str()).collect()
}

#[test]
fn inserted_work_is_found_by_id_as_stored() {
    let db = TestDatabase::create();
    let mut conn = db.connect();

    let inserted = insert_work(&mut conn, &NewWork::from_api(4)).expect("insert");
    let found = find_work(&mut conn, inserted.id).expect("query");

    assert_eq!(found.as_ref(), Some(&inserted));
    assert!(inserted.work_code.starts_with("api-"));
    assert_eq!(inserted.add_up_to, 4);
    assert!(!inserted.done);
    assert_eq!(inserted.result, None);
    assert_eq!(inserted.demand_id, None);
    assert_eq!(inserted.created_on, inserted.updated_on);
    assert!((Utc::now() - inserted.created_on).num_seconds().abs() < 60);
}

#[test]
fn unknown_id_is_none() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    assert_eq!(find_work(&mut conn, 12_345).expect("query"), None);
    assert_eq!(find_work(&mut conn, -1).expect("query"), None);
}

#[test]
fn negative_add_up_to_is_refused_by_the_table() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let error = insert_work(
        &mut conn,
        &NewWork {
            work_code: "api-negative".to_owned(),
            add_up_to: -1,
            demand_id: None,
        },
    )
    .expect_err("a negative add_up_to violates a constraint");
    assert!(
        error.to_string().contains("works_add_up_to_not_negative"),
        "{error}"
    );
}

#[test]
fn demand_id_and_work_code_are_unique() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let demand_id = Uuid::new_v4();
    insert_work(&mut conn, &NewWork::from_demand(demand_id, 3)).expect("first insert");

    let again = insert_work(&mut conn, &NewWork::from_demand(demand_id, 3))
        .expect_err("a second work for the same demand is refused");
    assert!(again.to_string().contains("works_demand_id_key"), "{again}");

    insert_api_work(&mut conn, "api-same", 1);
    let same_code = insert_work(
        &mut conn,
        &NewWork {
            work_code: "api-same".to_owned(),
            add_up_to: 1,
            demand_id: None,
        },
    )
    .expect_err("a second work with the same code is refused");
    assert!(
        same_code.to_string().contains("works_work_code_key"),
        "{same_code}"
    );
}

#[test]
fn a_wrong_result_is_refused_by_the_table() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-wrong", 4);

    let error = mark_work_done(&mut conn, work.id, 11).expect_err("10 is the only right result");
    assert!(
        error.to_string().contains("works_result_is_the_sum"),
        "{error}"
    );
    assert_eq!(find_work(&mut conn, work.id).expect("query"), Some(work));
}

#[test]
fn search_matches_the_prefix_within_the_window_in_id_order() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let first = insert_api_work(&mut conn, "api-aaa", 1);
    let second = insert_api_work(&mut conn, "api-abc", 2);
    insert_api_work(&mut conn, "consumer-aaa", 3);
    let old = insert_api_work(&mut conn, "api-old", 4);
    set_created_on(&mut conn, old.id, Utc::now() - Duration::hours(2));

    let last_hour = Utc::now() - Duration::hours(1);
    let found = search_works(&mut conn, &WorkSearch::new("api-", last_hour)).expect("search");
    assert_eq!(codes(&found), ["api-aaa", "api-abc"]);
    assert_eq!(found[0], first);
    assert_eq!(found[1], second);

    let wider = WorkSearch::new("api-", Utc::now() - Duration::hours(3));
    assert_eq!(
        codes(&search_works(&mut conn, &wider).expect("search")),
        ["api-aaa", "api-abc", "api-old"]
    );

    let until = WorkSearch {
        created_before: Some(last_hour),
        ..wider
    };
    assert_eq!(
        codes(&search_works(&mut conn, &until).expect("search")),
        ["api-old"]
    );

    let exact = WorkSearch::new("api-abc", last_hour);
    assert_eq!(
        codes(&search_works(&mut conn, &exact).expect("search")),
        ["api-abc"]
    );
}

#[test]
fn search_treats_like_metacharacters_as_literals() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    for code in ["api-x", "api-%x", "api_x", "apiXx", "api\\x", "api-'x"] {
        insert_api_work(&mut conn, code, 1);
    }
    let since = Utc::now() - Duration::hours(1);
    let cases: [(&str, &[&str]); 7] = [
        ("api-%", &["api-%x"]),
        ("api_", &["api_x"]),
        ("api\\", &["api\\x"]),
        ("%", &[]),
        ("_", &[]),
        ("api-'", &["api-'x"]),
        ("'; drop table works; --", &[]),
    ];
    for (prefix, expected) in cases {
        let found = search_works(&mut conn, &WorkSearch::new(prefix, since)).expect("search");
        assert_eq!(codes(&found), expected, "prefix {prefix:?}");
    }
    let everything = search_works(&mut conn, &WorkSearch::new("", since)).expect("search");
    assert_eq!(everything.len(), 6, "the empty prefix matches every code");
}

#[test]
fn search_filters_on_done_and_pages_by_id() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let works: Vec<_> = (0..7)
        .map(|i| insert_api_work(&mut conn, &format!("api-page{i}"), i))
        .collect();
    for work in works.iter().step_by(2) {
        complete_work(&mut conn, work).expect("complete");
    }
    let since = Utc::now() - Duration::hours(1);

    let done = WorkSearch {
        done: Some(true),
        ..WorkSearch::new("api-page", since)
    };
    assert_eq!(
        codes(&search_works(&mut conn, &done).expect("search")),
        ["api-page0", "api-page2", "api-page4", "api-page6"]
    );
    let pending = WorkSearch {
        done: Some(false),
        ..done.clone()
    };
    assert_eq!(
        codes(&search_works(&mut conn, &pending).expect("search")),
        ["api-page1", "api-page3", "api-page5"]
    );

    let mut pages = Vec::new();
    let mut page = WorkSearch {
        limit: 3,
        ..WorkSearch::new("api-page", since)
    };
    loop {
        let found = search_works(&mut conn, &page).expect("search");
        if found.is_empty() {
            break;
        }
        assert!(found.len() <= 3, "a page holds at most the limit");
        page.after_id = found.last().map(|work| work.id);
        pages.push(
            codes(&found)
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        pages,
        [
            vec!["api-page0", "api-page1", "api-page2"],
            vec!["api-page3", "api-page4", "api-page5"],
            vec!["api-page6"],
        ]
    );
    assert_eq!(WorkSearch::new("x", since).limit, SEARCH_DEFAULT_LIMIT);
}

#[test]
fn search_for_a_full_code_uses_the_prefix_index() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    diesel::sql_query(
        "insert into works (work_code, add_up_to) \
         select 'api-' || lpad(i::text, 10, '0'), 1 from generate_series(1, 5000) as i",
    )
    .execute(&mut conn)
    .expect("bulk insert");
    diesel::sql_query("analyze works")
        .execute(&mut conn)
        .expect("analyze");

    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let plan: Vec<Plan> = diesel::sql_query(
        "explain select * from works where work_code like 'api-0000004242%' escape '\\' \
         and created_on >= now() - interval '1 hour' order by id limit 100",
    )
    .load(&mut conn)
    .expect("explain");
    let plan: Vec<String> = plan.into_iter().map(|row| row.line).collect();
    assert!(
        plan.iter()
            .any(|line| line.contains("works_work_code_prefix_idx")),
        "{plan:#?}"
    );
}

#[test]
fn complete_work_records_three_events_and_the_result_once() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-four", 4);

    let Completion::Completed(done) = complete_work(&mut conn, &work).expect("complete") else {
        panic!("a pending work completes");
    };
    assert!(done.done);
    assert_eq!(done.result, Some(10));
    assert!(done.updated_on >= work.updated_on);
    assert_eq!(
        find_work(&mut conn, work.id).expect("query"),
        Some(done.clone())
    );

    let events = pp_lib::db::events::list_events(&mut conn, work.id).expect("events");
    let logged: Vec<(&str, &str)> = events
        .iter()
        .map(|event| (event.variable.as_str(), event.value.as_str()))
        .collect();
    assert_eq!(
        logged,
        [
            ("compute/start", ""),
            ("compute/stop", ""),
            ("compute/result", "10")
        ]
    );
    assert!(
        events
            .iter()
            .all(|event| event.work_code == "api-four" && event.work_id == work.id)
    );

    assert_eq!(
        complete_work(&mut conn, &work).expect("second run"),
        Completion::NotPending
    );
    let events_after = pp_lib::db::events::list_events(&mut conn, work.id).expect("events");
    assert_eq!(events_after, events, "a second run writes nothing");
}

#[test]
fn the_largest_work_completes_with_the_exact_sum() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-max", i32::MAX);
    let Completion::Completed(done) = complete_work(&mut conn, &work).expect("complete") else {
        panic!("a pending work completes");
    };
    assert_eq!(done.result, Some(2_305_843_008_139_952_128));
}

#[test]
fn consumer_work_is_created_from_a_demand() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let demand_id = Uuid::new_v4();
    let work = insert_work(&mut conn, &NewWork::from_demand(demand_id, 7)).expect("insert");
    assert!(
        work.work_code
            .starts_with(WorkOrigin::Consumer.code_prefix())
    );
    assert_eq!(work.demand_id, Some(demand_id));
}

#[test]
fn a_dropped_table_surfaces_as_a_database_error() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    diesel::sql_query("drop table events")
        .execute(&mut conn)
        .expect("sabotage");
    let work = insert_api_work(&mut conn, "api-sabotaged", 2);

    let error = complete_work(&mut conn, &work).expect_err("events cannot be written");
    assert!(matches!(error, pp_lib::Error::Database(_)), "{error:?}");
    assert!(
        !error.is_transient(),
        "a missing table does not heal by retrying"
    );
    let after = find_work(&mut conn, work.id)
        .expect("query")
        .expect("the work is still there");
    assert!(!after.done, "the failed transaction left the work pending");
}
