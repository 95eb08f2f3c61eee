//! Works: insert and find, the table's constraints, prefix search (literal, windowed, paged,
//! indexed) and finishing a work with its three events.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use pp_lib::db::works::{
    PrefixRange, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT, SearchPlanning, WorkSearch,
    every_code_ranges, find_work, finish_works, insert_work, mark_work_done,
    narrow_search_statement, search_narrow_works, search_statement, search_works,
    sweep_pending_works,
};
use pp_lib::schema::works;
use pp_lib::work::{NewWork, WorkOrigin};
use pp_storage::testkit::{TestDatabase, finish_work};
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
        finish_work(&mut conn, work);
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

/// Works spread over the last two hours, half `api-`, half `consumer-`, random hex codes:
/// enough rows for the planner's choices to be the ones it makes on a real table.
fn seed_two_hours_of_works(conn: &mut PgConnection, rows: u32) {
    diesel::sql_query(format!(
        "insert into works (work_code, add_up_to, created_on) \
         select case when i % 2 = 0 then 'api-' else 'consumer-' end || substr(md5(i::text), 1, 10), \
                1, now() - interval '2 hours' + i * (interval '2 hours' / {rows}) \
         from generate_series(1, {rows}) as i"
    ))
    .execute(conn)
    .expect("bulk insert");
    diesel::sql_query("vacuum analyze works")
        .execute(conn)
        .expect("analyze");
}

#[derive(QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = diesel::sql_types::Text, column_name = "QUERY PLAN")]
    line: String,
}

/// The plan PostgreSQL gives the statement `search_works` runs for `search`, prepared as the API
/// prepares it, under `plan_cache_mode` (`force_generic_plan` or `force_custom_plan`).
fn search_plan(conn: &mut PgConnection, search: &WorkSearch, mode: &str) -> String {
    let range = PrefixRange::of(&search.code_prefix);
    let quote = |text: &str| format!("'{}'", text.replace('\'', "''"));
    let since = format!("'{}'", search.created_since.to_rfc3339());
    let done = match search.done {
        Some(done) => format!("'{{{done}}}'"),
        None => "'{f,t}'".to_owned(),
    };
    let after_id = search.after_id.unwrap_or(0);
    let (types, values) = match &range.upper {
        // The empty prefix: the window, done, after id and limit, then every range's bounds.
        None if search.code_prefix.is_empty() => {
            let mut types = "timestamptz, timestamptz, boolean[], bigint, bigint".to_owned();
            let mut values = format!(
                "{since}, '9999-12-31', {done}, {after_id}, {}",
                search.limit
            );
            for (lower, upper) in every_code_ranges() {
                for bound in std::iter::once(lower).chain(upper) {
                    types.push_str(", text");
                    values.push_str(&format!(", {}", quote(&bound)));
                }
            }
            (types, values)
        }
        Some(upper) => (
            "text, text, timestamptz, timestamptz, boolean[], bigint, bigint".to_owned(),
            format!(
                "{}, {}, {since}, '9999-12-31', {done}, {after_id}, {}",
                quote(&range.lower),
                quote(upper),
                search.limit
            ),
        ),
        None => (
            "text, timestamptz, timestamptz, boolean[], bigint, bigint".to_owned(),
            format!(
                "{}, {since}, '9999-12-31', {done}, {after_id}, {}",
                quote(&range.lower),
                search.limit
            ),
        ),
    };
    let (statement, _) = search_statement(search);
    conn.transaction(|conn| {
        diesel::sql_query(format!("set local plan_cache_mode = {mode}")).execute(conn)?;
        diesel::sql_query(format!("prepare plan_probe ({types}) as {statement}")).execute(conn)?;
        let plan: Vec<PlanLine> =
            diesel::sql_query(format!("explain execute plan_probe ({values})")).load(conn)?;
        diesel::sql_query("deallocate plan_probe").execute(conn)?;
        Ok::<_, diesel::result::Error>(
            plan.into_iter()
                .map(|row| row.line)
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })
    .unwrap_or_else(|error| panic!("explaining {statement}: {error}"))
}

#[test]
fn searches_by_prefix_use_the_prefix_index_in_generic_and_custom_plans() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    seed_two_hours_of_works(&mut conn, 40_000);
    let last_hour = Utc::now() - Duration::hours(1);
    let exact: String = works::table
        .select(works::work_code)
        .filter(works::work_code.like("api-%"))
        .order(works::id.desc())
        .first(&mut conn)
        .expect("a seeded code");
    // 1 in 256 of the api- works: about 0.2% of the window.
    for prefix in [exact.as_str(), "api-ab"] {
        for limit in [SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT] {
            let search = WorkSearch {
                limit,
                ..WorkSearch::new(prefix, last_hour)
            };
            assert_ne!(
                search_statement(&search).1,
                SearchPlanning::WithValues,
                "a selective search is prepared, so it may get a generic plan"
            );
            for mode in ["force_generic_plan", "force_custom_plan"] {
                let plan = search_plan(&mut conn, &search, mode);
                assert!(
                    plan.contains("works_work_code_prefix_idx"),
                    "prefix {prefix:?}, limit {limit}, {mode}:\n{plan}"
                );
            }
        }
    }
}

#[test]
fn no_search_reads_the_table_whole() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    seed_two_hours_of_works(&mut conn, 40_000);
    let cases = [
        ("api-", Duration::hours(1)),
        ("c", Duration::hours(1)),
        ("api-", Duration::days(365_000)),
        ("", Duration::hours(1)),
        ("", Duration::days(365_000)),
        ("api-a", Duration::days(365_000)),
    ];
    for (prefix, window) in cases {
        let search = WorkSearch::new(prefix, Utc::now() - window);
        // A statement planned with its values only ever gets custom plans.
        let modes: &[&str] = match search_statement(&search).1 {
            SearchPlanning::Prepared | SearchPlanning::Together => {
                &["force_generic_plan", "force_custom_plan"]
            }
            SearchPlanning::WithValues => &["force_custom_plan"],
        };
        for mode in modes {
            let plan = search_plan(&mut conn, &search, mode);
            assert!(
                plan.contains("Index") && !plan.contains("Seq Scan"),
                "prefix {prefix:?}, window {window}, {mode}:\n{plan}"
            );
        }
    }
    // An empty prefix over all of time stops at the limit: each origin's range walks the
    // primary key in order, and the ranges are merged in that order.
    let everything = WorkSearch::new("", chrono::DateTime::UNIX_EPOCH);
    let plan = search_plan(&mut conn, &everything, "force_custom_plan");
    assert!(
        plan.starts_with("Limit")
            && plan.contains("Merge Append")
            && plan.matches("Index Scan using works_pkey").count() >= 2,
        "{plan}"
    );
}

#[test]
fn the_empty_prefix_finds_every_origins_codes_and_others_in_id_order() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let codes_made = [
        "consumer-b",
        "zz",
        "api-a",
        "",
        "api.",
        "b",
        "consumer.",
        "api-c",
    ];
    for code in codes_made {
        insert_api_work(&mut conn, code, 1);
    }
    let since = Utc::now() - Duration::hours(1);

    let everything = search_works(&mut conn, &WorkSearch::new("", since)).expect("search");
    let first_page = WorkSearch {
        limit: 3,
        ..WorkSearch::new("", since)
    };
    let first = search_works(&mut conn, &first_page).expect("search");
    let second_page = WorkSearch {
        after_id: first.last().map(|work| work.id),
        ..first_page.clone()
    };
    let second = search_works(&mut conn, &second_page).expect("search");

    assert_eq!(codes(&everything), codes_made, "every code, in id order");
    assert_eq!(codes(&first), codes_made[..3]);
    assert_eq!(codes(&second), codes_made[3..6]);
}

#[test]
fn searches_at_the_edges_of_the_character_range_are_exact() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let codes_in = [
        "api-z\u{10FFFF}",
        "api-z\u{10FFFF}x",
        "api-{",
        "api-\u{D7FF}a",
        "api-\u{E000}",
        "\u{10FFFF}\u{10FFFF}",
        "\u{10FFFF}\u{10FFFF}\u{10FFFF}",
    ];
    for code in codes_in {
        insert_api_work(&mut conn, code, 1);
    }
    let since = Utc::now() - Duration::hours(1);
    let cases: [(&str, &[&str]); 5] = [
        ("api-z\u{10FFFF}", &["api-z\u{10FFFF}", "api-z\u{10FFFF}x"]),
        ("api-z", &["api-z\u{10FFFF}", "api-z\u{10FFFF}x"]),
        ("api-\u{D7FF}", &["api-\u{D7FF}a"]),
        (
            "\u{10FFFF}\u{10FFFF}",
            &["\u{10FFFF}\u{10FFFF}", "\u{10FFFF}\u{10FFFF}\u{10FFFF}"],
        ),
        ("\u{10FFFF}\u{10FFFF}\u{10FFFF}\u{10FFFF}", &[]),
    ];
    for (prefix, expected) in cases {
        let found = search_works(&mut conn, &WorkSearch::new(prefix, since)).expect("search");
        assert_eq!(codes(&found), expected, "prefix {prefix:?}");
    }
    let searches: Vec<WorkSearch> = cases
        .iter()
        .map(|(prefix, _)| WorkSearch::new(*prefix, since))
        .collect();
    let batched = search_narrow_works(&mut conn, &searches).expect("batched searches");
    for ((prefix, expected), found) in cases.iter().zip(&batched) {
        assert_eq!(codes(found), *expected, "prefix {prefix:?}, batched");
    }
}

#[test]
fn a_batch_of_searches_answers_each_as_it_would_be_answered_alone() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    seed_two_hours_of_works(&mut conn, 4_000);
    diesel::sql_query("update works set done = true, result = 1 where id % 3 = 0")
        .execute(&mut conn)
        .expect("some works done");
    let codes: Vec<String> = works::table
        .select(works::work_code)
        .order(works::id.asc())
        .load(&mut conn)
        .expect("codes");
    let now = Utc::now();
    let mut searches = Vec::new();
    for (index, code) in codes.iter().step_by(97).enumerate() {
        let index = index as i64;
        searches.push(WorkSearch {
            code_prefix: code[..code.len() - (index as usize % 8)].to_owned(),
            created_since: now - Duration::minutes(20 + index * 7),
            created_before: (index % 5 == 0).then(|| now - Duration::minutes(index)),
            done: [None, Some(true), Some(false)][index as usize % 3],
            after_id: (index % 4 == 1).then_some(index * 37),
            limit: [1, 3, SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT][index as usize % 4],
        });
    }
    // Wide ones too: the statement is exact for them, only not meant for them.
    for prefix in ["", "api-", "consumer-", "c", "none-such", "%", "api-_"] {
        searches.push(WorkSearch::new(prefix, now - Duration::hours(3)));
    }
    let batched = search_narrow_works(&mut conn, &searches).expect("batched searches");
    assert_eq!(batched.len(), searches.len());
    for (search, found) in searches.iter().zip(&batched) {
        let alone = search_works(&mut conn, search).expect("search alone");
        assert_eq!(found, &alone, "{search:?}");
    }
    assert!(
        batched.iter().any(|found| found.len() > 1) && batched.iter().any(Vec::is_empty),
        "the cases find some works and miss others"
    );
}

#[test]
fn a_batch_of_narrow_searches_uses_the_prefix_index_in_generic_and_custom_plans() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    seed_two_hours_of_works(&mut conn, 40_000);
    let exact: String = works::table
        .select(works::work_code)
        .filter(works::work_code.like("consumer-%"))
        .order(works::id.desc())
        .first(&mut conn)
        .expect("a seeded code");
    let upper = PrefixRange::of(&exact).upper.expect("an upper bound");
    let since = (Utc::now() - Duration::hours(1)).to_rfc3339();
    let statement = narrow_search_statement();
    for limit in [SEARCH_DEFAULT_LIMIT, SEARCH_MAX_LIMIT] {
        for mode in ["force_generic_plan", "force_custom_plan"] {
            let plan = conn
                .transaction(|conn| {
                    diesel::sql_query(format!("set local plan_cache_mode = {mode}"))
                        .execute(conn)?;
                    diesel::sql_query(format!(
                        "prepare plan_probe (text[], text[], timestamptz[], timestamptz[], \
                         boolean[], bigint[], bigint[]) as {statement}"
                    ))
                    .execute(conn)?;
                    let plan: Vec<PlanLine> = diesel::sql_query(format!(
                        "explain execute plan_probe (array['{exact}', 'api-abc', 'api-x1y'], \
                         array['{upper}', 'api-abd', 'api-x1z'], \
                         array['{since}', '{since}', '{since}']::timestamptz[], \
                         array['9999-12-31', '9999-12-31', '9999-12-31']::timestamptz[], \
                         array[null, true, false]::boolean[], array[0, 0, 5]::bigint[], \
                         array[{limit}, {limit}, {limit}]::bigint[])"
                    ))
                    .load(conn)?;
                    diesel::sql_query("deallocate plan_probe").execute(conn)?;
                    Ok::<_, diesel::result::Error>(
                        plan.into_iter()
                            .map(|row| row.line)
                            .collect::<Vec<_>>()
                            .join("\n"),
                    )
                })
                .unwrap_or_else(|error| panic!("explaining {statement}: {error}"));
            assert!(
                plan.contains("works_work_code_prefix_idx") && !plan.contains("Seq Scan"),
                "limit {limit}, {mode}:\n{plan}"
            );
        }
    }
}

#[test]
fn finishing_a_work_records_three_events_and_the_result_once() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-four", 4);

    let finished = conn
        .transaction(|conn| finish_works(conn, std::slice::from_ref(&work)))
        .expect("finish");
    let [done] = finished.as_slice() else {
        panic!("a pending work is finished: {finished:?}");
    };
    assert!(done.done);
    assert_eq!(done.result, Some(10));
    assert!(done.updated_on >= work.updated_on);
    assert_eq!(
        find_work(&mut conn, work.id).expect("query").as_ref(),
        Some(done)
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

    let again = conn
        .transaction(|conn| finish_works(conn, std::slice::from_ref(&work)))
        .expect("second run");
    assert_eq!(again, [], "a done work is left as it is");
    let events_after = pp_lib::db::events::list_events(&mut conn, work.id).expect("events");
    assert_eq!(events_after, events, "a second run writes nothing");
}

#[test]
fn the_largest_work_completes_with_the_exact_sum() {
    let db = TestDatabase::create();
    let mut conn = db.connect();
    let work = insert_api_work(&mut conn, "api-max", i32::MAX);
    let done = finish_work(&mut conn, &work);
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

    let since = Utc::now() - Duration::hours(1);
    let error = sweep_pending_works(&mut conn, since, 10).expect_err("events cannot be written");
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
