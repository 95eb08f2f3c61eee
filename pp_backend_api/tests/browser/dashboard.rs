//! What a person sees on each page of the dashboard, and what the page does when they act.

use lapin::BasicProperties;
use pp_backend_api::testkit::browser::{Browser, LAPTOP, PHONE};
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_storage::testkit::EVENTS;
use serde_json::json;
use task_consumer::testkit::{TestConsumer, test_settings};

const TOKEN: &str = "a-browser-admin-token-0123456789";

/// The API relaying to a queue of its own: what the page looks at.
async fn spawn_app(settings: TestSettings) -> TestApp {
    TestApp::spawn(settings.relaying()).await
}

/// The real consumer, with its sweeper, on the app's queue and database.
async fn start_consumer(app: &TestApp) -> TestConsumer {
    TestConsumer::start(test_settings(app.db.config(), app.queue().config())).await
}

/// Publishes a message the consumer will dead-letter (its body is no demand).
async fn publish_poison(app: &TestApp, body: &str) {
    let properties = BasicProperties::default()
        .with_message_id(uuid::Uuid::new_v4().to_string().as_str().into())
        .with_content_type("application/json".into());
    app.queue().publish_raw(body.as_bytes(), properties).await;
}

/// `N` of the page's "Updated 12:00:01, N s ago" (0 when it says no age).
fn seconds_ago(text: &str) -> u64 {
    text.rsplit_once(", ")
        .and_then(|(_, age)| age.strip_suffix(" s ago"))
        .and_then(|age| age.parse().ok())
        .unwrap_or(0)
}

fn number(text: &str) -> i64 {
    text.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(-1)
}

#[tokio::test]
async fn the_overviews_numbers_change_after_demands_are_consumed() {
    let app = spawn_app(TestSettings::new()).await;
    let browser = Browser::open(LAPTOP).await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_for_text("#stat-done [data-figure]", |text| text == "0")
        .await;

    // Enqueued from the page: committed to the outbox, published by the relay, waiting in the
    // queue while no consumer runs.
    browser.type_into("#enqueue-count", "25").await;
    browser.type_into("#enqueue-add", "10").await;
    browser.click("#enqueue").await;
    browser
        .wait_for_text("#enqueue-result", |text| text.contains("25 demand(s)"))
        .await;
    browser
        .wait_for_text("#queue-depth", |text| number(text) == 25)
        .await;
    browser
        .wait_for_text("#queue-consumers", |text| text == "0")
        .await;
    let consumer = start_consumer(&app).await;

    browser
        .wait_for_text("#stat-done [data-figure]", |text| number(text) == 25)
        .await;
    browser
        .wait_for_text("#queue-depth", |text| number(text) == 0)
        .await;
    browser
        .wait_for_text("#stat-hour [data-figure]", |text| number(text) == 25)
        .await;
    browser
        .wait_for_text("#rate-total", |text| number(text) == 25)
        .await;
    browser
        .wait_for_text("#queue-consumers", |text| number(text) >= 1)
        .await;
    assert_eq!(
        app.db
            .count("select count(*) as n from works where done and result = 55"),
        25
    );
    browser.close().await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_works_page_shows_its_fields_and_its_events_as_a_timeline() {
    let app = spawn_app(TestSettings::new()).await;
    let consumer = start_consumer(&app).await;
    let work = app.create_work(4).await;
    let (id, code) = (work.id, work.work_code);
    app.db.eventually_count(EVENTS, 3).await;
    let browser = Browser::open(LAPTOP).await;

    // Found by the search, then opened from its row.
    browser.goto(&app.url("/#/works")).await;
    browser.type_into("#search-prefix", &code[..8]).await;
    browser.click("#search-form button[type=submit]").await;
    browser
        .wait_for_text("#works-rows tr", |text| text.contains(&code))
        .await;
    browser
        .click(&format!("#works-rows tr[data-id='{id}']"))
        .await;

    browser
        .wait_for_text("#work-title", |text| text == code)
        .await;
    browser
        .wait_for_text("#work-fields [data-field=state] dd", |text| text == "done")
        .await;
    assert_eq!(
        browser
            .text("#work-fields [data-field=result] dd")
            .await
            .as_deref(),
        Some("10")
    );
    let events = browser.texts("#work-events li .variable").await;
    assert_eq!(events, ["compute/start", "compute/stop", "compute/result"]);
    let result = browser
        .text("#work-events li[data-variable='compute/result'] .value")
        .await;
    assert_eq!(result.as_deref(), Some("= 10"));
    browser.close().await;
    consumer.stop().await;
}

#[tokio::test]
async fn a_dead_letter_retried_from_the_page_is_consumed() {
    let app = spawn_app(TestSettings::new()).await;
    let message_id = uuid::Uuid::new_v4();
    // A valid demand in the dead-letter queue, as if it had been rejected (no consumer runs yet).
    app.queue()
        .dead_letter(
            br#"{"add_up_to":6,"done":false}"#,
            pp_lib::amqp::demand_properties(message_id),
        )
        .await;
    let consumer = start_consumer(&app).await;
    let browser = Browser::open(LAPTOP).await;

    browser.goto(&app.url("/#/dead-letters")).await;
    let letter = format!("li[data-key='{message_id}']");
    browser
        .wait_for_text(&format!("{letter} pre"), |text| {
            text.contains(r#""add_up_to":6"#)
        })
        .await;
    browser
        .wait_for_text(&format!("{letter} .meta"), |text| text.contains("rejected"))
        .await;
    browser
        .click(&format!("{letter} button[data-action=retry]"))
        .await;

    browser
        .wait_for_text("#dlq-empty", |text| text.contains("empty"))
        .await;
    app.db
        .eventually_count(
            &format!(
                "select count(*) as n from works where demand_id = '{message_id}' and done and result = 21"
            ),
            1,
        )
        .await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_for_text("#stat-done [data-figure]", |text| text == "1")
        .await;
    browser
        .wait_for_text("#dlq-depth", |text| text == "0")
        .await;
    browser.close().await;
    consumer.stop().await;
}

#[tokio::test]
async fn an_action_without_the_admin_token_is_refused_and_passes_with_it() {
    let app = spawn_app(TestSettings::new().with(|settings| {
        settings.dashboard.admin_token = Some(TOKEN.parse().expect("a valid admin token"));
    }))
    .await;
    let browser = Browser::open(LAPTOP).await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_for_text("#stat-pending [data-figure]", |text| text == "0")
        .await;

    browser.type_into("#enqueue-count", "3").await;
    browser.click("#enqueue").await;

    browser
        .wait_for_text("#banner", |text| {
            text.contains("Refused") && text.contains("admin token")
        })
        .await;
    browser.wait_for_text("#token-dialog h2", |_| true).await;
    assert_eq!(
        app.db.count("select count(*) as n from demand_outbox"),
        0,
        "nothing was enqueued"
    );

    browser.type_into("#token-input", TOKEN).await;
    browser.click("#token-form button[type=submit]").await;
    browser.click("#enqueue").await;
    browser
        .wait_for_text("#enqueue-result", |text| text.contains("3 demand(s)"))
        .await;
    assert_eq!(app.db.count("select count(*) as n from demand_outbox"), 3);
    browser.close().await;
}

#[tokio::test]
async fn the_pause_control_stops_the_refresh_until_resumed() {
    let app = spawn_app(TestSettings::new()).await;
    let browser = Browser::open(PHONE).await;
    browser.goto(&app.url("/")).await;
    browser
        .wait_for_text("#stat-pending [data-figure]", |text| text == "0")
        .await;

    browser.click("#pause").await;
    browser
        .wait_for_text("#live", |text| text == "Paused")
        .await;
    app.create_work(1).await;
    // The page's own clock says its figures are older than a refresh period (2 s): a refresh
    // would have made them new again.
    browser
        .wait_for_text("#updated", |text| seconds_ago(text) >= 3)
        .await;
    assert_eq!(
        browser.text("#stat-pending [data-figure]").await.as_deref(),
        Some("0"),
        "a paused page does not refresh"
    );

    browser.click("#pause").await;
    browser.wait_for_text("#live", |text| text == "Live").await;
    browser
        .wait_for_text("#stat-pending [data-figure]", |text| text == "1")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn a_poison_message_shows_on_the_dead_letter_page_with_why() {
    let app = spawn_app(TestSettings::new()).await;
    let consumer = start_consumer(&app).await;
    publish_poison(&app, r#"{"add_up_to": -3}"#).await;
    let browser = Browser::open(PHONE).await;

    browser.goto(&app.url("/")).await;
    browser
        .wait_for_text("#dlq-depth", |text| text == "1")
        .await;
    browser.click("#dlq-depth").await;

    browser
        .wait_for_text("#dlq-list pre", |text| text.contains("-3"))
        .await;
    // The consumer's reason (its x-pp-reason header), not a bare reject.
    browser
        .wait_for_text("#dlq-list .reason", |text| {
            text.contains("add_up_to must be zero or more, got -3")
        })
        .await;
    browser.wait_for_text("#nav-dlq", |text| text == "1").await;
    browser.close().await;
    consumer.stop().await;
}

#[tokio::test]
async fn every_page_fits_a_phone_without_sideways_scrolling() {
    let app = spawn_app(TestSettings::new()).await;
    let consumer = start_consumer(&app).await;
    publish_poison(&app, "not json at all").await;
    let browser = Browser::open(PHONE).await;

    for (fragment, shown) in [
        ("", "#stat-pending [data-figure]"),
        ("#/works", "#page-info"),
        ("#/dead-letters", "#dlq-list pre"),
    ] {
        browser.goto(&app.url(&format!("/{fragment}"))).await;
        browser.wait_for_text(shown, |text| !text.is_empty()).await;
        let overflow = browser
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                json!([]),
            )
            .await;
        assert!(
            overflow.as_i64().unwrap_or(1) <= 0,
            "{fragment:?} is wider than the phone by {overflow}px"
        );
        let png = browser.screenshot().await;
        assert!(png.starts_with(b"\x89PNG"), "{fragment:?}: a PNG");
    }
    browser.close().await;
    consumer.stop().await;
}
