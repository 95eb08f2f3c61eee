//! Search: the time window, the done filter, and paging with `after_id`.

use diesel::prelude::*;
use pp_lib::work::Work;
use pp_storage::testkit::finish_work;
use reqwest::StatusCode;

use pp_backend_api::testkit::{TestApp, TestSettings};

#[tokio::test]
async fn search_pages_through_every_match_in_id_order() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut created = Vec::new();
    for n in 0..7 {
        created.push(app.create_work(n).await.id);
    }

    let mut seen = Vec::new();
    let mut after_id: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = vec![("work_code", "api-"), ("limit", "3")];
        if let Some(after) = after_id.as_deref() {
            query.push(("after_id", after));
        }
        let response = app.search(&query).await;
        assert_eq!(response.status(), StatusCode::OK);
        let next = response
            .headers()
            .get("x-next-after-id")
            .map(|value| value.to_str().expect("ASCII").to_owned());
        let page: Vec<Work> = response.json().await.expect("JSON");
        pages += 1;
        seen.extend(page.iter().map(|work| work.id));
        match next {
            Some(next) => {
                assert_eq!(page.len(), 3, "only a full page has a next page");
                assert_eq!(next, page[2].id.to_string());
                after_id = Some(next);
            }
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(seen, created);
}

#[tokio::test]
async fn search_keeps_to_the_window_and_the_done_filter() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let recent = app.create_work(1).await;
    let finished = app.create_work(2).await;
    let old = app.create_work(3).await;
    let mut conn = app.db.connect();
    finish_work(&mut conn, &finished);
    diesel::sql_query("update works set created_on = now() - interval '3 hours' where id = $1")
        .bind::<diesel::sql_types::BigInt, _>(old.id)
        .execute(&mut conn)
        .expect("age a work");

    let ids = |works: Vec<Work>| works.into_iter().map(|work| work.id).collect::<Vec<_>>();
    let last_hour: Vec<Work> = app
        .search(&[("work_code", "api-")])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        ids(last_hour),
        [recent.id, finished.id],
        "default window: the last hour"
    );
    let wider: Vec<Work> = app
        .search(&[("work_code", "api-"), ("since", "4h")])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(ids(wider), [recent.id, finished.id, old.id]);
    let done: Vec<Work> = app
        .search(&[("work_code", "api-"), ("done", "true")])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(ids(done), [finished.id]);
    let pending: Vec<Work> = app
        .search(&[("work_code", "api-"), ("done", "false"), ("since", "1d")])
        .await
        .json()
        .await
        .expect("JSON");
    assert_eq!(ids(pending), [recent.id, old.id]);
}

#[tokio::test]
async fn concurrent_narrow_searches_each_get_their_own_works() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut works = Vec::new();
    for n in 0..20 {
        works.push(app.create_work(n).await);
    }
    // Exact codes (batched together), each searched twice, a narrow prefix no code has, and
    // a wide one (run alone), all at once.
    let mut prefixes: Vec<String> = works.iter().map(|work| work.work_code.clone()).collect();
    prefixes.extend(works.iter().map(|work| work.work_code.clone()));
    prefixes.extend(["api-none-such".to_owned(), "api-".to_owned()]);

    let queries: Vec<[(&str, &str); 1]> = prefixes
        .iter()
        .map(|prefix| [("work_code", prefix.as_str())])
        .collect();
    let answers =
        futures_util::future::join_all(queries.iter().map(|query| app.search(query))).await;

    for (prefix, response) in prefixes.iter().zip(answers) {
        assert_eq!(response.status(), StatusCode::OK, "{prefix}");
        let found: Vec<Work> = response.json().await.expect("JSON");
        let expected: Vec<&Work> = works
            .iter()
            .filter(|work| work.work_code.starts_with(prefix.as_str()))
            .collect();
        assert_eq!(found.iter().collect::<Vec<_>>(), expected, "{prefix}");
    }
}
