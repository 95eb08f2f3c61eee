//! The dashboard with identities on: the login page, what a viewer and an operator each see,
//! the server refusing a viewer who posts anyway, the audit page, and a page that needs a login
//! sending the browser to it.

use pp_backend_api::auth::AuthSetting;
use pp_backend_api::testkit::browser::{Browser, LAPTOP};
use pp_backend_api::testkit::identities::TEST_PASSWORD;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::auth::Role;
use serde_json::json;

/// Logs `name` in through the page's form and waits for the dashboard to say who it is.
async fn log_in(browser: &Browser, app: &TestApp, name: &str, role: &str) {
    browser.goto(&app.url("/login")).await;
    browser.type_into("input[name=name]", name).await;
    browser
        .type_into("input[name=password]", TEST_PASSWORD)
        .await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_for_text("#who", |text| text == format!("{name} · {role}"))
        .await;
}

/// Whether each element is hidden, as the page has it now.
async fn hidden(browser: &Browser, selectors: &[&str]) -> Vec<bool> {
    let answer = browser
        .execute(
            "return arguments[0].map((css) => document.querySelector(css).hidden);",
            json!([selectors]),
        )
        .await;
    serde_json::from_value(answer).expect("booleans")
}

#[tokio::test]
async fn a_viewer_sees_no_action_and_is_refused_when_posting_anyway_an_operator_acts_and_is_audited()
 {
    let app = TestApp::spawn(TestSettings::new().with_queue().auth(AuthSetting::Writes)).await;
    app.add_account("vic", Role::Viewer).await;
    app.add_account("ops", Role::Operator).await;
    let browser = Browser::open(LAPTOP).await;

    log_in(&browser, &app, "vic", "viewer").await;
    browser
        .wait_for_text("#stat-pending [data-figure]", |text| text == "0")
        .await;
    let actions = ["#panel-enqueue", "#retry-all", "#nav-audit"];
    assert_eq!(hidden(&browser, &actions).await, [true, true, true]);
    // The page's own request, with the viewer's cookie, from the same origin: the server says no.
    let status = browser
        .execute(
            "return fetch('/dashboard/api/demands', {method: 'POST', \
             headers: {'Content-Type': 'application/json'}, body: '{\"count\": 2}'}) \
             .then((response) => response.status);",
            json!([]),
        )
        .await;
    assert_eq!(status, json!(403));
    assert_eq!(app.db.count("select count(*) as n from demand_outbox"), 0);

    browser.click("#logout button").await;
    browser
        .wait_for_text("form h1", |text| text == "Log in")
        .await;
    log_in(&browser, &app, "ops", "operator").await;
    browser.type_into("#enqueue-count", "2").await;
    browser.click("#enqueue").await;
    browser
        .wait_for_text("#enqueue-result", |text| text.contains("2 demand(s)"))
        .await;
    assert_eq!(hidden(&browser, &actions).await, [false, false, false]);
    browser.click("#nav-audit").await;
    let rows = browser
        .wait_for_text("#audit-rows", |text| text.contains("demands.enqueue"))
        .await;
    for seen in [
        "account:ops",
        "2 adding up to random numbers",
        "account:vic",
        "refused",
        "logout",
    ] {
        assert!(rows.contains(seen), "{seen} in {rows}");
    }
    browser.close().await;
}

#[tokio::test]
async fn with_all_the_dashboard_sends_a_stranger_to_the_login_page() {
    let app = TestApp::spawn(TestSettings::new().auth(AuthSetting::All)).await;
    app.add_account("ada", Role::Viewer).await;
    let browser = Browser::open(LAPTOP).await;

    browser.goto(&app.url("/")).await;
    browser
        .wait_for_text("form h1", |text| text == "Log in")
        .await;
    browser.type_into("input[name=name]", "ada").await;
    browser
        .type_into("input[name=password]", "not the password at all")
        .await;
    browser.click("form button[type=submit]").await;
    browser
        .wait_for_text(".problem", |text| text.contains("wrong name or password"))
        .await;
    log_in(&browser, &app, "ada", "viewer").await;
    browser
        .wait_for_text("#stat-pending [data-figure]", |text| text == "0")
        .await;
    browser.close().await;
}

#[tokio::test]
async fn with_off_and_the_admin_token_a_page_opened_directly_offers_the_actions_and_asks_for_it() {
    const TOKEN: &str = "a-browser-admin-token-0123456789";
    let app = TestApp::spawn(TestSettings::new().with_queue().with(|settings| {
        settings.dashboard.admin_token = Some(TOKEN.parse().expect("a valid admin token"));
    }))
    .await;
    let browser = Browser::open(LAPTOP).await;

    browser.goto(&app.url("/#/audit")).await;
    browser.wait_for_text("#token-dialog h2", |_| true).await;
    browser.type_into("#token-input", TOKEN).await;
    browser.click("#token-form button[type=submit]").await;
    browser
        .wait_for_text("#audit-empty", |text| text.contains("Nothing recorded"))
        .await;

    browser.goto(&app.url("/#/dead-letters")).await;
    browser
        .wait_for_text("#dlq-empty", |text| text.contains("empty"))
        .await;
    assert_eq!(
        hidden(&browser, &["#retry-all", "#nav-audit"]).await,
        [false, false]
    );
    browser.close().await;
}
