//! Health, readiness, metrics, request ids, the OpenAPI document and Swagger UI, and panics.

use std::time::{Duration, Instant};

use actix_web::middleware::from_fn;
use actix_web::{App, web};
use pp_backend_api::middleware::{REQUEST_ID, catch_panics, json_errors, observe};
use pp_backend_api::testkit::{TestApp, TestSettings, error_message};
use pp_lib::config::DatabaseConfig;
use pp_lib::testkit::assert_prompt;
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn health_and_readiness_answer_ok_with_a_database() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let health: Value = app.get("/healthz").await.json().await.expect("JSON");
    assert_eq!(health["status"], "ok");
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.expect("JSON");
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn without_a_database_the_api_is_live_not_ready_and_answers_503_quickly() {
    let app = TestApp::spawn(TestSettings::new().with(|settings| {
        settings.database = DatabaseConfig {
            connect_timeout: Duration::from_secs(1),
            ..DatabaseConfig::for_url(
                "postgres://pp:hunter2@127.0.0.1:1/pp"
                    .parse()
                    .expect("a URL"),
            )
        };
    }))
    .await;

    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    let message = error_message(app.get("/readyz").await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(message, "database unavailable");
    let started = Instant::now();
    let message = error_message(app.post_work(None).await, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(message, "database unavailable, retry later");
    assert_prompt(
        started.elapsed(),
        Duration::from_secs(1),
        "a write within the connect timeout",
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_and_show_the_pool() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let work = app.create_work(1).await;
    app.get_work(work.id).await;
    app.get_work(work.id).await;
    app.get("/work/x").await;
    app.get("/nope").await;

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("text");

    for line in [
        r#"pp_api_http_requests_total{method="POST",route="/work",status="200"} 1"#,
        r#"pp_api_http_requests_total{method="GET",route="/work/{id}",status="200"} 2"#,
        r#"pp_api_http_requests_total{method="GET",route="/work/{id}",status="400"} 1"#,
        r#"pp_api_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"pp_api_http_request_duration_seconds_count{method="GET",route="/work/{id}"} 3"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    for gauge in [
        "pp_api_db_pool_connections_in_use",
        "pp_api_db_pool_connections_idle",
        "pp_api_db_pool_connections_max 4",
    ] {
        assert!(text.contains(gauge), "missing {gauge} in\n{text}");
    }
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("GET");
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");

    let generated = app.get("/work/0").await;
    let id = generated.headers()["x-request-id"]
        .to_str()
        .expect("ASCII")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");

    let replaced = app
        .client
        .get(app.url("/nope"))
        .header("x-request-id", "x".repeat(500))
        .send()
        .await
        .expect("GET");
    let id = replaced.headers()["x-request-id"].to_str().expect("ASCII");
    assert!(
        uuid::Uuid::parse_str(id).is_ok(),
        "an absurd id is replaced: {id}"
    );
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_swagger_ui_is_served_offline() {
    let app = TestApp::spawn(TestSettings::new()).await;
    let document: Value = app
        .get("/api-docs/openapi.json")
        .await
        .json()
        .await
        .expect("JSON");
    assert!(
        document["openapi"]
            .as_str()
            .expect("a version")
            .starts_with("3.")
    );
    let paths = document["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/work", "post"),
        ("/work/{id}", "get"),
        ("/work/search", "get"),
        ("/work/{id}/events", "get"),
        ("/work/demand", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/stats", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path}"
        );
    }
    assert!(document["components"]["schemas"]["Work"].is_object());
    let method_not_allowed = &document["components"]["responses"]["MethodNotAllowed"];
    assert!(
        method_not_allowed["headers"]["Allow"].is_object(),
        "{method_not_allowed}"
    );

    // A created work links to its GET and its events, in OpenAPI's own spelling.
    let links = &document["paths"]["/work"]["post"]["responses"]["200"]["links"];
    for (link, operation) in [
        ("GetWork", "get_work"),
        ("ListWorkEvents", "list_work_events"),
    ] {
        assert_eq!(links[link]["operationId"], operation, "{links}");
        assert_eq!(
            links[link]["parameters"]["id"], "$response.body#/id",
            "{links}"
        );
        assert!(links[link].get("operation_id").is_none(), "{links}");
    }
    let search = &document["paths"]["/work/search"]["get"]["parameters"];
    let work_code = search
        .as_array()
        .and_then(|parameters| parameters.iter().find(|p| p["name"] == "work_code"))
        .expect("work_code is documented");
    assert_eq!(work_code["required"], true, "{work_code}");

    let redirect = app.get("/docs").await;
    assert_eq!(redirect.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(redirect.headers()["location"], "/docs/");
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("HTML").contains("swagger-ui"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(
        bundle.bytes().await.expect("JS").len() > 100_000,
        "the vendored bundle"
    );
    let initializer = app
        .get("/docs/swagger-initializer.js")
        .await
        .text()
        .await
        .expect("JS");
    assert!(
        initializer.contains(r#""url": "/api-docs/openapi.json""#),
        "{initializer}"
    );
}

async fn panicking_handler() -> &'static str {
    panic!("a bug in a handler")
}

#[actix_web::test]
async fn a_panicking_handler_answers_500_json_and_the_worker_lives_on() {
    let service = actix_web::test::init_service(
        App::new()
            .service(
                web::resource("/boom")
                    .route(web::get().to(panicking_handler))
                    .wrap(from_fn(catch_panics)),
            )
            .route("/fine", web::get().to(|| async { "fine" }))
            .wrap(json_errors())
            .wrap(from_fn(observe)),
    )
    .await;

    let request = actix_web::test::TestRequest::get()
        .uri("/boom")
        .insert_header((REQUEST_ID, "boom-1"))
        .to_request();
    let response = match actix_web::test::try_call_service(&service, request).await {
        Ok(response) => response.into_parts().1.map_into_boxed_body(),
        Err(error) => error.error_response(),
    };
    assert_eq!(
        response.status(),
        actix_web::http::StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        response.headers().get(REQUEST_ID).map(|id| id.as_bytes()),
        Some(&b"boom-1"[..])
    );
    let body = actix_web::body::to_bytes(response.into_body())
        .await
        .expect("a body");
    let body: Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"http_code": 500, "message": "internal error"})
    );

    let fine = actix_web::test::call_service(
        &service,
        actix_web::test::TestRequest::get()
            .uri("/fine")
            .to_request(),
    )
    .await;
    assert_eq!(fine.status(), actix_web::http::StatusCode::OK);
}
