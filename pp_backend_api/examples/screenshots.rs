//! `make screenshots`: pictures of the dashboard for the README, taken of a live pipeline.
//!
//! Starts the API, its outbox relay and the real consumer over a database and a queue of their
//! own (the testkits' `TestApp` and `TestConsumer`, as the browser tests do), drives traffic
//! through them for a while (demands enqueued at a rate that rises and falls, works created over
//! HTTP for the sweeper, a few messages the consumer must dead-letter), then has headless
//! Chromium photograph each page: the login page, then, logged in as an operator, the overview
//! in light and dark at laptop and phone width, the works search, a work's page, the dead letters
//! and the audit trail. The API asks for identities (`PP_AUTH=writes`): the traffic carries a
//! key, the browsers log in. Every figure in them is real.
//!
//! Usage: `screenshots [DIRECTORY] [--seconds N]` (PNGs to `docs/` by default; `--seconds`, or
//! `PP_SCREENSHOT_SECONDS`, is how long traffic runs first: 10 to 3600, default 120).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use lapin::BasicProperties;
use pp_backend_api::auth::AuthSetting;
use pp_backend_api::testkit::browser::{Browser, LAPTOP, PHONE};
use pp_backend_api::testkit::identities::TEST_PASSWORD;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::auth::Role;
use serde_json::json;
use task_consumer::testkit::{TestConsumer, test_settings};

/// Photographs the dashboard of a live pipeline.
#[derive(Debug, Parser)]
#[command(name = "screenshots")]
struct Args {
    /// Where the PNGs go.
    #[arg(default_value = "docs")]
    directory: PathBuf,
    /// Seconds of traffic before the pictures are taken.
    #[arg(long, env = "PP_SCREENSHOT_SECONDS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(10..=3_600))]
    seconds: u64,
}

/// Messages the consumer dead-letters, so the dead-letter page has something to show.
const POISON: [&str; 3] = [
    r#"{"add_up_to": -4, "done": false}"#,
    "not json at all",
    r#"{"add_up_to": 2147483648}"#,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.directory)
        .with_context(|| format!("failed to create {}", args.directory.display()))?;

    let app = TestApp::spawn(TestSettings::new().relaying().auth(AuthSetting::Writes)).await;
    let key = app.create_key("traffic", "read,write,operate");
    app.add_account("ada", Role::Operator).await;
    let consumer = TestConsumer::start(test_settings(app.db.config(), app.queue().config())).await;
    for body in POISON {
        let properties = BasicProperties::default()
            .with_message_id(uuid::Uuid::new_v4().to_string().as_str().into())
            .with_content_type("application/json".into());
        app.queue().publish_raw(body.as_bytes(), properties).await;
    }
    println!(
        "screenshots: {} s of traffic through {}",
        args.seconds, app.address
    );
    drive_traffic(&app, &key, Duration::from_secs(args.seconds)).await?;

    let laptop = Browser::open(LAPTOP).await;
    let phone = Browser::open(PHONE).await;
    let shots = Shots {
        app: &app,
        directory: &args.directory,
    };
    shots.log_in(&laptop, true).await?;
    shots.log_in(&phone, false).await?;
    shots.overviews(&laptop, &phone).await?;
    shots.works(&laptop).await?;
    shots
        .page(&laptop, "light", "#/dead-letters", "#dlq-list pre")
        .await;
    shots
        .save(&laptop, "dashboard-dead-letters-laptop-light.png")
        .await?;
    shots
        .page(&phone, "dark", "#/dead-letters", "#dlq-list pre")
        .await;
    shots
        .save(&phone, "dashboard-dead-letters-phone-dark.png")
        .await?;
    shots.page(&laptop, "light", "#/audit", "#audit-rows").await;
    shots
        .save(&laptop, "dashboard-audit-laptop-light.png")
        .await?;
    laptop.close().await;
    phone.close().await;
    consumer.stop().await;
    Ok(())
}

/// For `duration`: demands enqueued every 250 ms at a rate that rises and falls, and a work
/// created over HTTP each second for the sweeper, each with `key`.
async fn drive_traffic(app: &TestApp, key: &str, duration: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(250));
    let mut tick = 0_u64;
    while started.elapsed() < duration {
        ticks.tick().await;
        let phase = started.elapsed().as_secs_f64() / 20.0;
        let count = (8.0 + 7.0 * phase.sin() + 3.0 * (phase * 2.7).cos())
            .round()
            .max(1.0);
        app.client
            .post(app.url("/dashboard/api/demands"))
            .bearer_auth(key)
            .json(&json!({ "count": count }))
            .send()
            .await
            .context("failed to enqueue demands")?;
        if tick.is_multiple_of(4) {
            app.client
                .post(app.url("/work"))
                .bearer_auth(key)
                .send()
                .await
                .context("failed to create a work")?;
        }
        tick += 1;
    }
    Ok(())
}

/// Where the pictures are taken and where they go.
struct Shots<'a> {
    app: &'a TestApp,
    directory: &'a Path,
}

impl Shots<'_> {
    /// Logs the operator in through the login page (photographed first, when `photograph`).
    async fn log_in(&self, browser: &Browser, photograph: bool) -> anyhow::Result<()> {
        browser.goto(&self.app.url("/login")).await;
        browser
            .wait_for_text("form h1", |text| text == "Log in")
            .await;
        if photograph {
            self.save(browser, "dashboard-login-laptop-light.png")
                .await?;
        }
        browser.type_into("input[name=name]", "ada").await;
        browser
            .type_into("input[name=password]", TEST_PASSWORD)
            .await;
        browser.click("form button[type=submit]").await;
        browser
            .wait_for_text("#who", |text| text == "ada · operator")
            .await;
        Ok(())
    }

    /// The overview, light and dark, at laptop and phone width.
    async fn overviews(&self, laptop: &Browser, phone: &Browser) -> anyhow::Result<()> {
        for theme in ["light", "dark"] {
            for (browser, width) in [(laptop, "laptop"), (phone, "phone")] {
                self.page(browser, theme, "", "#rate-total").await;
                self.save(browser, &format!("dashboard-overview-{width}-{theme}.png"))
                    .await?;
            }
        }
        Ok(())
    }

    /// The works search for an API work's code, then that work's page.
    async fn works(&self, laptop: &Browser) -> anyhow::Result<()> {
        let works = self
            .app
            .get_json("/work/search?work_code=api-&limit=1")
            .await;
        let code = works[0]["work_code"]
            .as_str()
            .context("no API work to show")?;
        self.page(laptop, "light", "#/works", "#page-info").await;
        laptop.type_into("#search-prefix", &code[..5]).await;
        laptop.click("#search-form button[type=submit]").await;
        laptop
            .wait_for_text("#page-info", |text| text.contains("work(s)"))
            .await;
        self.save(laptop, "dashboard-works-laptop-light.png")
            .await?;
        laptop.click("#works-rows tr").await;
        laptop
            .wait_for_text("#work-events", |text| text.contains("compute/result"))
            .await;
        self.save(laptop, "dashboard-work-laptop-light.png").await
    }

    /// Loads the page at `fragment` in `theme` and waits until `shown` has its text and the page
    /// has refreshed twice more (the chart and every figure filled in).
    async fn page(&self, browser: &Browser, theme: &str, fragment: &str, shown: &str) {
        browser.goto(&self.app.url("/")).await;
        browser
            .execute(
                "localStorage.setItem('pp-theme', arguments[0]);",
                json!([theme]),
            )
            .await;
        browser.goto(&self.app.url(&format!("/{fragment}"))).await;
        browser.execute("location.reload();", json!([])).await;
        browser
            .wait_for_text(shown, |text| !text.is_empty() && text != "–")
            .await;
        for _ in 0..2 {
            let text = browser.text("#updated").await.unwrap_or_default();
            let before = refreshed_at(&text).to_owned();
            browser
                .wait_for_text("#updated", |text| {
                    text.starts_with("Updated") && refreshed_at(text) != before
                })
                .await;
        }
    }

    async fn save(&self, browser: &Browser, name: &str) -> anyhow::Result<()> {
        let path = self.directory.join(name);
        std::fs::write(&path, browser.screenshot().await)
            .with_context(|| format!("failed to write {}", path.display()))?;
        println!("screenshots: {}", path.display());
        Ok(())
    }
}

/// `Updated 12:00:01` of `Updated 12:00:01, 3 s ago`: when the page last refreshed.
fn refreshed_at(text: &str) -> &str {
    text.split(',').next().unwrap_or(text)
}
