//! Bad input of every kind: a clear 4xx JSON answer, never a panic, never a 500.

use diesel::prelude::*;
use reqwest::{Method, StatusCode};

use pp_backend_api::testkit::{TestApp, TestSettings, error_message};

#[tokio::test]
async fn bad_work_ids_are_400() {
    let app = TestApp::spawn(TestSettings::new()).await;
    for id in ["abc", "1.5", "99999999999999999999", "%27%3B%20drop"] {
        for path in [format!("/work/{id}"), format!("/work/{id}/events")] {
            let message = error_message(app.get(&path).await, StatusCode::BAD_REQUEST).await;
            assert!(message.starts_with("work id must be"), "{path}: {message}");
        }
    }
}

#[tokio::test]
async fn bad_bodies_are_400_saying_what_was_wrong() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let cases = [
        ("not json", "must be a JSON object"),
        ("[4]", "must be a JSON object"),
        (r#"{"add_up_to": 4"#, "must be a JSON object"),
        (r#"{"add_up_to": "4"}"#, "whole number"),
        (r#"{"add_up_to": true}"#, "whole number"),
        (r#"{"add_up_to": 1.5}"#, "whole number"),
        (r#"{"add_up_to": -1}"#, "zero or more, got -1"),
        (
            r#"{"add_up_to": 2147483648}"#,
            "at most 2147483647, got 2147483648",
        ),
        (r#"{"add_up_to": 1e400}"#, "must be a JSON object"),
    ];
    for path in ["/work", "/work/demand"] {
        for (body, reason) in cases {
            let response = app
                .client
                .post(app.url(path))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST");
            let message = error_message(response, StatusCode::BAD_REQUEST).await;
            assert!(message.contains(reason), "{path} {body:?}: {message}");
        }
    }
    let mut conn = app.db.connect();
    let works: i64 = pp_lib::schema::works::table
        .count()
        .get_result(&mut conn)
        .expect("count");
    assert_eq!(works, 0, "nothing was created");
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let body = format!(
        r#"{{"add_up_to": 4, "padding": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let response = app
        .client
        .post(app.url("/work"))
        .body(body)
        .send()
        .await
        .expect("POST");
    error_message(response, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let not_found = error_message(app.get("/nope").await, StatusCode::NOT_FOUND).await;
    assert_eq!(not_found, "no route for GET /nope");

    let cases = [
        (Method::DELETE, "/work/1"),
        (Method::PUT, "/work"),
        (Method::GET, "/work"),
        (Method::POST, "/work/search"),
        (Method::GET, "/work/demand"),
        (Method::POST, "/work/1/events"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/metrics"),
    ];
    for (method, path) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .expect("request");
        let allow = response
            .headers()
            .get(reqwest::header::ALLOW)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let message = error_message(response, StatusCode::METHOD_NOT_ALLOWED).await;
        assert_eq!(message, format!("{method} is not allowed on {path}"));
        let served = if matches!(path, "/work" | "/work/demand") {
            "POST"
        } else {
            "GET"
        };
        assert_eq!(allow.as_deref(), Some(served), "{method} {path}: Allow");
    }
}

#[tokio::test]
async fn bad_search_parameters_are_400() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let cases: [(&[(&str, &str)], &str); 14] = [
        (&[], "missing query parameter work_code"),
        (
            &[("work_code", "a"), ("after_id", "-1")],
            "after_id must be",
        ),
        (&[("work_code", "a"), ("since", " 1h")], "since:"),
        (&[("work_code", "a"), ("since", "1h\n")], "since:"),
        (&[("work_code", "a"), ("since", "1h30")], "since:"),
        (&[("work_code", "a"), ("limit", "0")], "limit must be"),
        (&[("work_code", "a"), ("limit", "1001")], "limit must be"),
        (&[("work_code", "a"), ("limit", "ten")], "limit must be"),
        (
            &[("work_code", "a"), ("done", "yes")],
            "done must be true or false",
        ),
        (&[("work_code", "a"), ("after_id", "x")], "after_id must be"),
        (&[("work_code", "a"), ("since", "5 parsecs")], "since:"),
        (
            &[("work_code", "a"), ("since", "99999999999999d")],
            "since:",
        ),
        (
            &[("work_code", "a"), ("limit", "1"), ("limit", "2")],
            "malformed query",
        ),
        (&[("work_code", "a\0b")], "NUL"),
    ];
    for (query, reason) in cases {
        let message = error_message(app.search(query).await, StatusCode::BAD_REQUEST).await;
        assert!(message.contains(reason), "{query:?}: {message}");
    }
}

#[tokio::test]
async fn an_immense_search_window_is_just_everything() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let work = app.create_work(1).await;
    let response = app
        .search(&[("work_code", "api-"), ("since", "3000000d")])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let works: Vec<pp_lib::work::Work> = response.json().await.expect("JSON");
    assert_eq!(works, vec![work.clone()]);

    // Too long for any clock to subtract: still everything, not an error.
    let response = app
        .search(&[
            ("work_code", "api-"),
            ("since", "999999999999d999999999999d"),
        ])
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let works: Vec<pp_lib::work::Work> = response.json().await.expect("JSON");
    assert_eq!(works, vec![work]);
}

#[tokio::test]
async fn search_prefixes_are_data_never_sql_or_patterns() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let mut conn = app.db.connect();
    for code in ["api-x", "api-%x", "api_x", "api-'x"] {
        diesel::sql_query("insert into works (work_code, add_up_to) values ($1, 1)")
            .bind::<diesel::sql_types::Text, _>(code)
            .execute(&mut conn)
            .expect("insert");
    }
    let cases: [(&str, &[&str]); 6] = [
        ("api-%", &["api-%x"]),
        ("api_", &["api_x"]),
        ("%", &[]),
        ("api-'", &["api-'x"]),
        ("'; drop table works; --", &[]),
        ("api-x' or '1'='1", &[]),
    ];
    for (prefix, expected) in cases {
        let response = app.search(&[("work_code", prefix)]).await;
        assert_eq!(response.status(), StatusCode::OK, "{prefix:?}");
        let works: Vec<pp_lib::work::Work> = response.json().await.expect("JSON");
        let codes: Vec<&str> = works.iter().map(|work| work.work_code.as_str()).collect();
        assert_eq!(codes, expected, "prefix {prefix:?}");
    }
    let left: i64 = pp_lib::schema::works::table
        .count()
        .get_result(&mut conn)
        .expect("the table is still there");
    assert_eq!(left, 4);
}

#[tokio::test]
async fn a_broken_database_is_an_opaque_500_that_leaks_nothing() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let work = app.create_work(3).await;
    let mut conn = app.db.connect();
    diesel::sql_query("drop table works cascade")
        .execute(&mut conn)
        .expect("sabotage");

    let message = error_message(
        app.get_work(work.id).await,
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;

    assert_eq!(message, "internal error", "no SQL, no table names");
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), StatusCode::OK, "the server lives on");
}
