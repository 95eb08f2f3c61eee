//! cli_01's integration tests: the real binary against a real API, spawned in-process on
//! 127.0.0.1:0 over its own freshly migrated database, and against the same database directly.
//!
//! Each test that needs data gets its own API and database (pp_storage's testkit drops the
//! database when the test ends), so the tests run in parallel and leave nothing behind.

mod answers;
mod drive;
mod failures;
mod helpers;
mod usage;
