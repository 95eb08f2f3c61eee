//! `make screenshots`: pictures of the dashboard for the README, taken of a live pipeline.
//!
//! Starts the API, its outbox relay and the real consumer over a database and a queue of their
//! own (as the browser tests do), drives traffic through them for a while (demands enqueued at
//! a rate that rises and falls, works created over HTTP for the sweeper, a few messages the
//! consumer must dead-letter), then has headless Chromium photograph each page: the overview in
//! light and dark at laptop and phone width, the works search, a work's page and the dead
//! letters. Every figure in them is real. PNGs go to the directory given (default `docs/`).
//!
//! Environment: PP_SCREENSHOT_SECONDS, how long traffic runs first (default 120).

#[allow(dead_code)] // Shared with the browser tests, which use all of it.
#[path = "../tests/browser/pipeline.rs"]
mod pipeline;
#[allow(dead_code)]
#[path = "../tests/browser/webdriver.rs"]
mod webdriver;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use pipeline::{Options, Pipeline};
use serde_json::json;
use webdriver::{Browser, LAPTOP, PHONE};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let directory = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "docs".to_owned()));
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("failed to create {}", directory.display()))?;
    let seconds: u64 = std::env::var("PP_SCREENSHOT_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(120);

    let pipeline = Pipeline::start(Options {
        consumer: true,
        ..Options::default()
    })
    .await;
    for body in [
        r#"{"add_up_to": -4, "done": false}"#,
        "not json at all",
        r#"{"add_up_to": 2147483648}"#,
    ] {
        pipeline.publish_poison(body).await;
    }
    println!(
        "screenshots: {seconds} s of traffic through {}",
        pipeline.url
    );
    drive_traffic(&pipeline, Duration::from_secs(seconds)).await?;

    let laptop = Browser::open(LAPTOP).await;
    let phone = Browser::open(PHONE).await;
    for theme in ["light", "dark"] {
        for (browser, width) in [(&laptop, "laptop"), (&phone, "phone")] {
            shoot(
                &pipeline,
                browser,
                theme,
                "",
                "#rate-total",
                &directory,
                &format!("dashboard-overview-{width}-{theme}.png"),
            )
            .await?;
        }
    }
    let code = first_api_code(&pipeline).await?;
    show(&pipeline, &laptop, "light", "#/works", "#page-info").await;
    laptop.type_into("#search-prefix", &code[..5]).await;
    laptop.click("#search-form button[type=submit]").await;
    laptop
        .wait_for_text("#page-info", |text| text.contains("work(s)"))
        .await;
    save(&laptop, &directory, "dashboard-works-laptop-light.png").await?;
    laptop.click("#works-rows tr").await;
    laptop
        .wait_for_text("#work-events", |text| text.contains("compute/result"))
        .await;
    save(&laptop, &directory, "dashboard-work-laptop-light.png").await?;
    shoot(
        &pipeline,
        &laptop,
        "light",
        "#/dead-letters",
        "#dlq-list pre",
        &directory,
        "dashboard-dead-letters-laptop-light.png",
    )
    .await?;
    shoot(
        &pipeline,
        &phone,
        "dark",
        "#/dead-letters",
        "#dlq-list pre",
        &directory,
        "dashboard-dead-letters-phone-dark.png",
    )
    .await?;
    laptop.close().await;
    phone.close().await;
    pipeline.stop().await;
    Ok(())
}

/// For `duration`: demands enqueued every 250 ms at a rate that rises and falls, and a few works
/// created over HTTP each second for the sweeper.
async fn drive_traffic(pipeline: &Pipeline, duration: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tick = 0_u64;
    while started.elapsed() < duration {
        let phase = started.elapsed().as_secs_f64() / 20.0;
        let count = (8.0 + 7.0 * phase.sin() + 3.0 * (phase * 2.7).cos())
            .round()
            .max(1.0);
        pipeline
            .client
            .post(format!("{}/dashboard/api/demands", pipeline.url))
            .json(&json!({ "count": count }))
            .send()
            .await
            .context("failed to enqueue demands")?;
        if tick.is_multiple_of(4) {
            pipeline
                .client
                .post(format!("{}/work", pipeline.url))
                .send()
                .await
                .context("failed to create a work")?;
        }
        tick += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

async fn first_api_code(pipeline: &Pipeline) -> anyhow::Result<String> {
    let works: serde_json::Value = pipeline
        .client
        .get(format!(
            "{}/work/search?work_code=api-&limit=1",
            pipeline.url
        ))
        .send()
        .await?
        .json()
        .await?;
    works[0]["work_code"]
        .as_str()
        .map(str::to_owned)
        .context("no API work to show")
}

async fn shoot(
    pipeline: &Pipeline,
    browser: &Browser,
    theme: &str,
    fragment: &str,
    shown: &str,
    directory: &Path,
    name: &str,
) -> anyhow::Result<()> {
    show(pipeline, browser, theme, fragment, shown).await;
    save(browser, directory, name).await
}

/// Loads the page at `fragment` in `theme` and waits until `shown` has its text and the page
/// has refreshed twice (the chart and every figure filled in).
async fn show(pipeline: &Pipeline, browser: &Browser, theme: &str, fragment: &str, shown: &str) {
    browser.goto(&pipeline.page("")).await;
    browser
        .execute(
            "localStorage.setItem('pp-theme', arguments[0]);",
            json!([theme]),
        )
        .await;
    browser.goto(&pipeline.page(fragment)).await;
    browser.execute("location.reload();", json!([])).await;
    browser
        .wait_for_text(shown, |text| !text.is_empty() && text != "–")
        .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
}

async fn save(browser: &Browser, directory: &Path, name: &str) -> anyhow::Result<()> {
    let path = directory.join(name);
    std::fs::write(&path, browser.screenshot().await)
        .with_context(|| format!("failed to write {}", path.display()))?;
    println!("screenshots: {}", path.display());
    Ok(())
}
