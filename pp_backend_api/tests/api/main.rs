//! The API over real HTTP, against a real PostgreSQL: each test runs its own server on a random
//! port over its own freshly migrated database (`pp_backend_api::testkit::TestApp`).

mod auth;
mod concurrency;
mod dashboard;
mod db_lanes;
mod demand;
mod errors;
mod flags;
mod front_door;
mod idempotency;
mod nginx;
mod operations;
mod overload;
mod redis;
mod relay;
mod retention;
mod search;
mod shutdown;
mod stats;
mod wait;
mod work;
