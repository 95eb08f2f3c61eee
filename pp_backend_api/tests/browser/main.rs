//! The dashboard in a real browser: headless Chromium, driven over WebDriver, looks at a live
//! pipeline (the API, its outbox relay and the real consumer, each test with its own database,
//! queue and browser) and the tests assert what a person sees.

mod dashboard;
mod pipeline;
mod webdriver;
