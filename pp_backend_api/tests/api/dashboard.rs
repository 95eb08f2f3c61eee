//! The dashboard's page and JSON endpoints: figures read from the database and the broker,
//! dead letters browsed in place and acted on one by one, and the admin token's rules.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use pp_backend_api::auth::AuthSetting;
use pp_backend_api::auth::admin::ADMIN_TOKEN_HEADER;
use pp_backend_api::settings::Settings;
use pp_backend_api::testkit::{TestApp, TestSettings, error_message};
use pp_lib::config::{AmqpConfig, DatabaseConfig, QueueType};
use pp_lib::db::outbox::find_demand;
use pp_lib::testkit::TestQueue;
use reqwest::StatusCode;
use serde_json::Value;

const TOKEN: &str = "a-test-admin-token-0123456789";

/// The API over its own database, its dashboard reading a queue of its own.
async fn spawn_dashboard(configure: impl FnOnce(&mut Settings) + Send + 'static) -> TestApp {
    TestApp::spawn(TestSettings::new().with_queue().with(configure)).await
}

/// Makes a real dead letter: published to the work queue (with `x-pp-reason`, as the consumer
/// will set it), taken and rejected without requeue, so RabbitMQ moves it to `<queue>.dlq` with
/// its `x-death` header.
async fn dead_letter(queue: &TestQueue, message_id: &str, body: &str) {
    let mut headers = FieldTable::default();
    headers.insert(
        "x-pp-reason".into(),
        AMQPValue::LongString(format!("cannot use {message_id}").into()),
    );
    let properties = BasicProperties::default()
        .with_message_id(message_id.into())
        .with_content_type("application/json".into())
        .with_headers(headers);
    queue.dead_letter(body.as_bytes(), properties).await;
}

async fn dead_letters_of(queue: &TestQueue, count: usize) {
    for index in 0..count {
        dead_letter(
            queue,
            &format!("m-{index}"),
            &format!(r#"{{"add_up_to": -{index}}}"#),
        )
        .await;
    }
    queue
        .eventually_holds(&queue.dlq(), u32::try_from(count).expect("a few"))
        .await;
}

fn keys(page: &Value) -> Vec<String> {
    page["letters"]
        .as_array()
        .expect("letters")
        .iter()
        .map(|letter| letter["key"].as_str().expect("a key").to_owned())
        .collect()
}

async fn post(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url(path));
    if let Some(token) = token {
        request = request.header(ADMIN_TOKEN_HEADER.as_str(), token);
    }
    request.send().await.expect("POST")
}

#[tokio::test]
async fn the_page_and_its_assets_come_from_the_binary_under_a_strict_content_security_policy() {
    let app = spawn_dashboard(|_| {}).await;

    let page = app.get("/").await;
    let script = app.get("/dashboard/app.js").await;
    let style = app.get("/dashboard/app.css").await;

    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("text")
        .to_owned();
    assert!(policy.contains("script-src 'self'") && policy.contains("frame-ancestors 'none'"));
    let etag = script.headers()["etag"].clone();
    assert!(
        page.text()
            .await
            .expect("HTML")
            .contains("/dashboard/app.js")
    );
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script
            .text()
            .await
            .expect("JS")
            .contains("/dashboard/api/overview")
    );
    assert_eq!(style.status(), StatusCode::OK);
    let revalidated = app
        .client
        .get(app.url("/dashboard/app.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("GET");
    assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn the_overview_shows_counts_backlogs_and_the_queues_depths() {
    let app = spawn_dashboard(|_| {}).await;
    let queue = app.queue();
    for add_up_to in [1, 2, 3] {
        app.create_work(add_up_to).await;
    }
    dead_letters_of(queue, 2).await;

    let overview = app.get_json("/dashboard/api/overview").await;

    assert_eq!(
        overview["works"]["pending_works"],
        serde_json::json!({"value": 3, "exact": true}),
        "{overview}"
    );
    assert_eq!(overview["backlogs"]["sweeper"]["count"]["value"], 3);
    assert_eq!(
        overview["backlogs"]["beyond_sweep_window"]["count"]["value"],
        0
    );
    assert_eq!(overview["backlogs"]["outbox"]["count"]["value"], 0);
    assert_eq!(overview["broker"]["status"], "up");
    assert_eq!(overview["broker"]["queue"]["name"], queue.name());
    assert_eq!(overview["broker"]["dead_letters"]["messages"], 2);
    assert_eq!(
        overview["throughput"]["finished_per_second"]
            .as_array()
            .map(Vec::len),
        Some(900)
    );
    assert_eq!(overview["actions"], "loopback_only");
    assert_eq!(overview["sweep_window_seconds"], 6 * 3600);
    assert_eq!(overview["sweep_window"], "6h");
}

#[tokio::test]
async fn api_works_older_than_the_sweep_window_are_counted_apart() {
    let app = spawn_dashboard(|settings| {
        settings.dashboard.sweep_window.duration = Duration::from_secs(3600);
    })
    .await;
    let old = app.create_work(1).await;
    app.create_work(2).await;
    let mut conn = app.db.connect();
    diesel::RunQueryDsl::execute(
        diesel::sql_query(format!(
            "update works set created_on = now() - interval '3 hours' where id = {}",
            old.id
        )),
        &mut conn,
    )
    .expect("ageing a work");

    let overview = app.get_json("/dashboard/api/overview").await;

    let beyond = &overview["backlogs"]["beyond_sweep_window"];
    assert_eq!(beyond["count"]["value"], 1, "{overview}");
    assert!(beyond["oldest_age_seconds"].as_i64().unwrap_or(0) >= 3 * 3600 - 1);
    assert_eq!(overview["backlogs"]["sweeper"]["count"]["value"], 1);
    assert_eq!(overview["sweep_window_seconds"], 3600);
    assert_eq!(overview["sweep_window"], "1h");
}

#[tokio::test]
async fn the_overview_says_rabbitmq_is_down_instead_of_failing() {
    let app = spawn_dashboard(|settings| {
        settings.relay.amqp = AmqpConfig {
            nodes: "amqp://guest:secret@127.0.0.1:1/%2f"
                .parse()
                .expect("a URL"),
            queue: "nowhere".to_owned(),
            queue_type: QueueType::Classic,
        };
    })
    .await;

    let overview = app.get_json("/dashboard/api/overview").await;
    let dead_letters = app.get("/dashboard/api/dead-letters").await;

    assert_eq!(overview["broker"]["status"], "down", "{overview}");
    let error = overview["broker"]["error"].as_str().expect("a reason");
    assert!(
        error.contains("127.0.0.1:1") && !error.contains("secret"),
        "{error}"
    );
    assert_eq!(overview["broker"]["queue"], Value::Null);
    assert_eq!(overview["works"]["pending_works"]["value"], 0);
    assert_eq!(dead_letters.headers()["retry-after"], "1");
    error_message(dead_letters, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn an_overview_without_its_database_is_a_503_to_retry() {
    let app = spawn_dashboard(|settings| {
        settings.database = DatabaseConfig {
            connect_timeout: Duration::from_millis(500),
            ..DatabaseConfig::for_url(
                "postgres://postgres@127.0.0.1:1/nothing"
                    .parse()
                    .expect("a URL"),
            )
        };
    })
    .await;

    let response = app.get("/dashboard/api/overview").await;

    assert_eq!(response.headers()["retry-after"], "1");
    error_message(response, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn overviews_asked_within_a_second_are_computed_once() {
    let app = spawn_dashboard(|_| {}).await;

    let asked =
        futures_util::future::join_all((0..5).map(|_| app.get_json("/dashboard/api/overview")))
            .await;

    let first = &asked[0]["generated_at_ms"];
    assert!(
        asked
            .iter()
            .all(|overview| &overview["generated_at_ms"] == first)
    );
}

#[tokio::test]
async fn browsing_dead_letters_twice_shows_the_same_order_and_loses_nothing() {
    let app = spawn_dashboard(|_| {}).await;
    let queue = app.queue();
    dead_letters_of(queue, 5).await;

    // Three browses of different sizes: a browse is shared only by those asking for the same
    // size, so each reads the queue again.
    let first = app.get_json("/dashboard/api/dead-letters").await;
    let second = app.get_json("/dashboard/api/dead-letters?limit=3").await;
    let third = app.get_json("/dashboard/api/dead-letters?limit=6").await;

    let expected: Vec<String> = (0..5).map(|index| format!("m-{index}")).collect();
    assert_eq!(keys(&first), expected);
    assert_eq!(keys(&second), expected[..3]);
    assert_eq!(second["total"], 5);
    assert_eq!(keys(&third), expected);
    assert_eq!(
        queue
            .ready_count(&queue.topology().dead_letter_queue())
            .await,
        5
    );
    let letter = &first["letters"][1];
    assert_eq!(letter["body"], r#"{"add_up_to": -1}"#);
    assert_eq!(letter["reason"], "cannot use m-1");
    assert_eq!(letter["deaths"][0]["reason"], "rejected");
    assert_eq!(letter["deaths"][0]["queue"], queue.name());
}

#[tokio::test]
async fn a_retried_dead_letter_goes_back_to_the_work_queue_and_the_others_keep_their_order() {
    let app = spawn_dashboard(|_| {}).await;
    let queue = app.queue();
    dead_letters_of(queue, 3).await;

    let retried = post(&app, "/dashboard/api/dead-letters/m-1/retry", None).await;

    assert_eq!(retried.status(), StatusCode::OK);
    let settled: Value = retried.json().await.expect("JSON");
    assert_eq!(
        settled,
        serde_json::json!({"key": "m-1", "outcome": "retried"})
    );
    let remaining = app.get_json("/dashboard/api/dead-letters").await;
    assert_eq!(keys(&remaining), ["m-0", "m-2"]);
    let copies = queue.take_all(queue.name()).await;
    assert_eq!(copies.len(), 1, "the retried message is in the work queue");
    assert_eq!(copies[0].message_id().as_deref(), Some("m-1"));
    assert_eq!(copies[0].body, br#"{"add_up_to": -1}"#);
}

#[tokio::test]
async fn a_discarded_dead_letter_is_gone_and_an_unknown_one_is_404() {
    let app = spawn_dashboard(|_| {}).await;
    let queue = app.queue();
    dead_letters_of(queue, 3).await;

    let discarded = post(&app, "/dashboard/api/dead-letters/m-0/discard", None).await;
    let unknown = post(&app, "/dashboard/api/dead-letters/m-9/discard", None).await;

    assert_eq!(discarded.status(), StatusCode::OK);
    error_message(unknown, StatusCode::NOT_FOUND).await;
    let remaining = app.get_json("/dashboard/api/dead-letters").await;
    assert_eq!(keys(&remaining), ["m-1", "m-2"]);
    assert_eq!(
        queue.ready_count(queue.name()).await,
        0,
        "nothing was retried"
    );
}

#[tokio::test]
async fn retry_all_sends_every_dead_letter_back_in_order() {
    let app = spawn_dashboard(|_| {}).await;
    let queue = app.queue();
    dead_letters_of(queue, 4).await;

    let response = post(&app, "/dashboard/api/dead-letters/retry-all", None).await;

    assert_eq!(response.status(), StatusCode::OK);
    let retried: Value = response.json().await.expect("JSON");
    assert_eq!(retried["retried"], 4);
    assert_eq!(
        queue
            .ready_count(&queue.topology().dead_letter_queue())
            .await,
        0
    );
    let order: Vec<String> = queue
        .take_all(queue.name())
        .await
        .iter()
        .map(|message| message.message_id().unwrap_or_default())
        .collect();
    assert_eq!(order, ["m-0", "m-1", "m-2", "m-3"]);
}

#[tokio::test]
async fn enqueued_demands_are_committed_to_the_outbox_like_post_work_demand() {
    let app = spawn_dashboard(|_| {}).await;

    let response = app
        .client
        .post(app.url("/dashboard/api/demands"))
        .header("content-type", "application/json")
        .body(r#"{"count": 5, "add_up_to": 3}"#)
        .send()
        .await
        .expect("POST");
    let too_many = app
        .client
        .post(app.url("/dashboard/api/demands"))
        .body(r#"{"count": 1001}"#)
        .send()
        .await
        .expect("POST");

    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.expect("JSON");
    assert_eq!(accepted["accepted"], 5);
    let mut conn = app.db.connect();
    for id in accepted["message_ids"].as_array().expect("ids") {
        let id = id.as_str().expect("text").parse().expect("a UUID");
        let stored = find_demand(&mut conn, id)
            .expect("query")
            .expect("in the outbox");
        assert_eq!(
            stored.body,
            serde_json::json!({"add_up_to": 3, "done": false})
        );
    }
    let message = error_message(too_many, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("1 to 1000"), "{message}");
}

#[tokio::test]
async fn with_an_admin_token_actions_need_it_and_reading_does_not() {
    let app = spawn_dashboard(|settings| {
        settings.dashboard.admin_token = Some(TOKEN.parse().expect("a token"));
    })
    .await;
    dead_letters_of(app.queue(), 1).await;

    let missing = post(&app, "/dashboard/api/demands", None).await;
    let wrong = post(
        &app,
        "/dashboard/api/dead-letters/m-0/discard",
        Some("not-the-admin-token"),
    )
    .await;
    let overview = app.get_json("/dashboard/api/overview").await;
    let right = post(&app, "/dashboard/api/dead-letters/m-0/discard", Some(TOKEN)).await;

    assert_eq!(
        missing.headers()["www-authenticate"],
        r#"AdminToken realm="pp dashboard""#
    );
    let message = error_message(missing, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("X-PP-Admin-Token"), "{message}");
    let message = error_message(wrong, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("wrong"), "{message}");
    assert_eq!(overview["actions"], "token");
    assert_eq!(right.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_a_token_actions_through_a_proxy_are_refused() {
    // PP_AUTH auto, on loopback: a proxied request is held to writes (an identity with operate);
    // PP_AUTH off said explicitly: the admin token or this machine, and a proxy is not.
    for (setting, status, reason) in [
        (AuthSetting::Auto, StatusCode::UNAUTHORIZED, "operate scope"),
        (AuthSetting::Off, StatusCode::FORBIDDEN, "PP_ADMIN_TOKEN"),
    ] {
        let app = spawn_dashboard(move |settings| settings.auth.setting = setting).await;

        let proxied = app
            .client
            .post(app.url("/dashboard/api/demands"))
            .header("x-forwarded-for", "203.0.113.7")
            .send()
            .await
            .expect("POST");

        let message = error_message(proxied, status).await;
        assert!(message.contains(reason), "{setting:?}: {message}");
        let mut conn = app.db.connect();
        let waiting = pp_lib::db::stats::count_matches(
            &mut conn,
            "demand_outbox where published_on is null",
            10,
        )
        .expect("count");
        assert_eq!(waiting.value, 0, "nothing was enqueued");
    }
}

#[tokio::test]
async fn the_dashboards_endpoints_and_every_answer_are_in_the_openapi_document() {
    let app = spawn_dashboard(|_| {}).await;

    let document = app.get_json("/api-docs/openapi.json").await;

    let paths = &document["paths"];
    for (path, method, statuses) in [
        ("/dashboard/api/overview", "get", &["200", "429", "503"][..]),
        (
            "/dashboard/api/dead-letters",
            "get",
            &["200", "400", "429", "503"],
        ),
        (
            "/dashboard/api/dead-letters/{key}/retry",
            "post",
            &["200", "401", "403", "404", "429", "503"],
        ),
        (
            "/dashboard/api/dead-letters/{key}/discard",
            "post",
            &["200", "401", "403", "404", "429", "503"],
        ),
        (
            "/dashboard/api/dead-letters/retry-all",
            "post",
            &["200", "401", "403", "429", "503"],
        ),
        (
            "/dashboard/api/demands",
            "post",
            &["202", "400", "401", "403", "413", "429", "503"],
        ),
    ] {
        let responses = &paths[path][method]["responses"];
        for status in statuses {
            assert!(
                responses[status].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    assert_eq!(
        document["components"]["securitySchemes"]["admin_token"]["name"],
        "X-PP-Admin-Token"
    );
    assert!(document["components"]["schemas"]["Overview"].is_object());
}

#[tokio::test]
async fn the_overview_reaches_the_broker_through_the_next_node_when_the_first_is_down() {
    // Held for the whole test: the first node refuses throughout.
    let down = pp_lib::testkit::ports::closed_port();
    let first = down.addr();
    let app = spawn_dashboard(move |settings| {
        let live = settings.relay.amqp.nodes.at(0).expose().to_owned();
        settings.relay.amqp.nodes = format!("amqp://guest:guest@{first}/%2f,{live}")
            .parse()
            .expect("two nodes");
    })
    .await;
    let queue = app.queue();
    dead_letters_of(queue, 1).await;

    let overview = app.get_json("/dashboard/api/overview").await;

    assert_eq!(overview["broker"]["status"], "up", "{overview}");
    assert_eq!(overview["broker"]["dead_letters"]["messages"], 1);
    drop(down);
}
