//! What a person sees on each page of the dashboard, and what the page does when they act.

use std::time::Duration;

use serde_json::json;

use crate::pipeline::{Options, Pipeline};
use crate::webdriver::{Browser, LAPTOP, PHONE};

const TOKEN: &str = "a-browser-admin-token-0123456789";

fn number(text: &str) -> i64 {
    text.chars()
        .filter(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or(-1)
}

#[tokio::test]
async fn the_overviews_numbers_change_after_demands_are_consumed() {
    let mut pipeline = Pipeline::start(Options::default()).await;
    let browser = Browser::open(LAPTOP).await;
    browser.goto(&pipeline.page("")).await;
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
    pipeline.start_consumer().await;

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
        pipeline.count("select count(*) as n from works where done and result = 55"),
        25
    );
    browser.close().await;
    pipeline.stop().await;
}

#[tokio::test]
async fn a_works_page_shows_its_fields_and_its_events_as_a_timeline() {
    let pipeline = Pipeline::start(Options {
        consumer: true,
        ..Options::default()
    })
    .await;
    let work: serde_json::Value = pipeline
        .client
        .post(format!("{}/work", pipeline.url))
        .json(&json!({"add_up_to": 4}))
        .send()
        .await
        .expect("POST /work")
        .json()
        .await
        .expect("a work");
    let id = work["id"].as_i64().expect("an id");
    let code = work["work_code"].as_str().expect("a code").to_owned();
    pipeline
        .wait_for_count("select count(*) as n from events", 3)
        .await;
    let browser = Browser::open(LAPTOP).await;

    // Found by the search, then opened from its row.
    browser.goto(&pipeline.page("#/works")).await;
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
    pipeline.stop().await;
}

#[tokio::test]
async fn a_dead_letter_retried_from_the_page_is_consumed() {
    let mut pipeline = Pipeline::start(Options::default()).await;
    let message_id = uuid::Uuid::new_v4();
    pipeline.dead_letter_a_demand(message_id, 6).await;
    pipeline.start_consumer().await;
    let browser = Browser::open(LAPTOP).await;

    browser.goto(&pipeline.page("#/dead-letters")).await;
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
    pipeline
        .wait_for_count(
            &format!(
                "select count(*) as n from works where demand_id = '{message_id}' and done and result = 21"
            ),
            1,
        )
        .await;
    browser.goto(&pipeline.page("")).await;
    browser
        .wait_for_text("#stat-done [data-figure]", |text| text == "1")
        .await;
    browser
        .wait_for_text("#dlq-depth", |text| text == "0")
        .await;
    browser.close().await;
    pipeline.stop().await;
}

#[tokio::test]
async fn an_action_without_the_admin_token_is_refused_and_passes_with_it() {
    let pipeline = Pipeline::start(Options {
        admin_token: Some(TOKEN.to_owned()),
        ..Options::default()
    })
    .await;
    let browser = Browser::open(LAPTOP).await;
    browser.goto(&pipeline.page("")).await;
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
        pipeline.count("select count(*) as n from demand_outbox"),
        0,
        "nothing was enqueued"
    );

    browser.type_into("#token-input", TOKEN).await;
    browser.click("#token-form button[type=submit]").await;
    browser.click("#enqueue").await;
    browser
        .wait_for_text("#enqueue-result", |text| text.contains("3 demand(s)"))
        .await;
    assert_eq!(pipeline.count("select count(*) as n from demand_outbox"), 3);
    browser.close().await;
    pipeline.stop().await;
}

#[tokio::test]
async fn the_pause_control_stops_the_refresh_until_resumed() {
    let pipeline = Pipeline::start(Options::default()).await;
    let browser = Browser::open(PHONE).await;
    browser.goto(&pipeline.page("")).await;
    browser
        .wait_for_text("#stat-pending [data-figure]", |text| text == "0")
        .await;

    browser.click("#pause").await;
    browser
        .wait_for_text("#live", |text| text == "Paused")
        .await;
    pipeline
        .client
        .post(format!("{}/work", pipeline.url))
        .send()
        .await
        .expect("POST /work");
    tokio::time::sleep(Duration::from_secs(3)).await;
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
    pipeline.stop().await;
}

#[tokio::test]
async fn a_poison_message_shows_on_the_dead_letter_page_with_why() {
    let pipeline = Pipeline::start(Options {
        consumer: true,
        ..Options::default()
    })
    .await;
    pipeline.publish_poison(r#"{"add_up_to": -3}"#).await;
    let browser = Browser::open(PHONE).await;

    browser.goto(&pipeline.page("")).await;
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
    pipeline.stop().await;
}

#[tokio::test]
async fn every_page_fits_a_phone_without_sideways_scrolling() {
    let pipeline = Pipeline::start(Options {
        consumer: true,
        ..Options::default()
    })
    .await;
    pipeline.publish_poison("not json at all").await;
    let browser = Browser::open(PHONE).await;

    for (fragment, shown) in [
        ("", "#stat-pending [data-figure]"),
        ("#/works", "#page-info"),
        ("#/dead-letters", "#dlq-list pre"),
    ] {
        browser.goto(&pipeline.page(fragment)).await;
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
    pipeline.stop().await;
}
