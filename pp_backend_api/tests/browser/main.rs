//! The dashboard in a real browser: headless Chromium, driven over WebDriver
//! (`pp_backend_api::testkit::browser`), looks at a live pipeline (the API with its outbox relay
//! and the real consumer, each test with its own database, queue and browser) and the tests
//! assert what a person sees.

mod dashboard;
mod logins;
