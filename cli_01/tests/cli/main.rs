//! cli_01's integration tests: the real binary against a real API (`TestApp`, in-process on a
//! free port over its own freshly migrated database), and against the same database directly.
//!
//! Each test that needs data gets its own API and database (dropped when the test ends), so the
//! tests run in parallel and leave nothing behind.

mod answers;
mod drive;
mod failures;
mod helpers;
mod keys;
mod usage;
