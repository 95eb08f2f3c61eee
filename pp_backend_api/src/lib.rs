//! pp_backend_api: the REST API of pp, as a library so tests run it on any port.
//!
//! A short tour:
//!
//! - [`settings`]: the command line and environment of the server.
//! - [`startup`]: [`startup::Application`] binds, builds the app and runs it until stopped.
//! - [`routes`]: one module per resource (`work`, `demand`, `health`, `metrics`, `docs`).
//! - [`auth`]: who may do what (`PP_AUTH`): API keys, dashboard logins, the admin token, the
//!   guard on every route, cross-site refusals and the audit trail.
//! - [`dashboard`]: the dashboard at `GET /`: the page, its JSON endpoints, its broker access
//!   and who may act from it.
//! - [`error`]: [`error::ApiError`], the one error type of the handlers, and the JSON error body
//!   `{"http_code": 404, "message": "…"}` of the original project as an answer.
//! - [`middleware`]: request ids, request metrics, turning panics into 500s, and JSON bodies for
//!   the errors actix-web answers by itself.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`.
//! - [`rate_limit`]: per-client rate limits shared by replicas through Redis (429 with
//!   `Retry-After`).
//! - [`relay`]: the outbox relay, publishing accepted demands to RabbitMQ from this process.
//! - [`janitor`]: deletes expired idempotency keys and old published demands.
//! - [`db_lanes`]: under load, concurrent lookups and inserts of works share one statement, and
//!   a request that waits past its deadline is answered 503.
//! - [`state`]: what handlers share, and how they reach the database without blocking.
//! - `testkit` (feature `testkit`): the API in a test, over services of its own, and headless
//!   Chromium for the dashboard.
//!
//! Handlers never block an actix worker. The hot routes — looking a work up, creating one,
//! searching — hand their query to a [`db_lanes::Batcher`], whose own database threads run it
//! (batched with its neighbours under load); every other query runs on actix's blocking pool
//! through `web::block` ([`state::AppState::run_db`]). Either way the r2d2 connection is taken
//! and used off the worker threads.
//!
//! The wire contract (the bodies, the answers, the error body, the search parameters, the
//! not-found rule) is pp_lib's [`contract`](pp_lib::contract), shared with the clients.

pub mod auth;
pub mod dashboard;
pub mod db_lanes;
pub mod error;
pub mod front_door;
pub mod janitor;
pub mod metrics;
pub mod middleware;
pub mod origin;
pub mod rate_limit;
pub mod relay;
pub mod resource;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod waiters;
