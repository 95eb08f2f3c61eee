//! Many clients at once: every create is its own row with its own id and code.

use std::collections::HashSet;

use diesel::prelude::*;
use pp_lib::work::Work;
use reqwest::StatusCode;

use pp_backend_api::testkit::{TestApp, TestSettings};

#[tokio::test]
async fn two_hundred_parallel_creates_make_two_hundred_distinct_works() {
    let app = TestApp::spawn(TestSettings::new()).await;

    let creates = (0..200).map(|n| {
        let body = format!(r#"{{"add_up_to": {n}}}"#);
        let request = app.client.post(app.url("/work")).body(body).send();
        async move {
            let response = request.await.expect("POST /work");
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Work>().await.expect("a work")
        }
    });
    let works = futures_util::future::join_all(creates).await;

    let ids: HashSet<i64> = works.iter().map(|work| work.id).collect();
    let codes: HashSet<&str> = works.iter().map(|work| work.work_code.as_str()).collect();
    let asked: HashSet<i32> = works.iter().map(|work| work.add_up_to).collect();
    assert_eq!((ids.len(), codes.len(), asked.len()), (200, 200, 200));
    let mut conn = app.db.connect();
    let rows: i64 = pp_lib::schema::works::table
        .count()
        .get_result(&mut conn)
        .expect("count");
    assert_eq!(rows, 200);
}
