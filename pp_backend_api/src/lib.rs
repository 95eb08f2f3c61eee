//! pp_backend_api: the REST API of pp, as a library so tests run it on any port.
//!
//! A short tour:
//!
//! - [`settings`]: the command line and environment of the server.
//! - [`startup`]: [`startup::Application`] binds, builds the app and runs it until stopped.
//! - [`routes`]: one module per resource (`work`, `demand`, `health`, `metrics`, `docs`).
//! - [`dashboard`]: the dashboard at `GET /`: the page, its JSON endpoints, its broker access
//!   and who may act from it.
//! - [`error`]: [`error::ApiError`], the one error type of the handlers, and the JSON error body
//!   `{"http_code": 404, "message": "…"}` of the original project.
//! - [`middleware`]: request ids, request metrics, turning panics into 500s, and JSON bodies for
//!   the errors actix-web answers by itself.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics`.
//! - [`relay`]: the outbox relay, publishing accepted demands to RabbitMQ from this process.
//! - [`batch`]: under load, concurrent lookups and inserts of works share one statement.
//! - [`state`]: what handlers share, and how they reach the database without blocking.
//!
//! Handlers never block an actix worker: every query runs on the blocking pool through
//! `web::block`, with a connection from the r2d2 pool taken inside the closure.

pub mod batch;
pub mod dashboard;
pub mod error;
pub mod metrics;
pub mod middleware;
pub mod rate_limit;
pub mod relay;
pub mod routes;
pub mod settings;
pub mod startup;
pub mod state;
