//! pp_lib: everything the pp binaries share.
//!
//! A short tour:
//!
//! - [`work`], [`demand`], [`event`]: the domain types, serialised exactly as the HTTP API and the
//!   queue carry them (timestamps as epoch seconds).
//! - [`contract`]: the HTTP API's wire contract — bodies, answers, search parameters, the
//!   not-found rule — shared by the API and its clients.
//! - [`auth`]: identities and what each may do: API keys' tokens and scopes, accounts' roles and
//!   passwords, session tokens.
//! - [`compute`]: the work itself, `1 + 2 + … + n`, in closed form and checked.
//! - [`config`]: typed settings read from flags, then the environment, then a `.env` file.
//! - [`error`]: the one error type of the library, and the policy every crate follows.
//! - [`db`]: the r2d2 pool and the Diesel queries, a module per table. Diesel is synchronous:
//!   read the module's documentation before calling it from async code.
//! - [`schema`]: the Diesel view of the tables that `pp_storage`'s migrations create.
//! - [`logging`]: one way to start `env_logger` for every binary.
//! - [`outage`]: a dependency's outage, logged once when it starts and once when it ends.
//! - [`amqp`] and [`shutdown`] (feature `amqp`): RabbitMQ topology, the supervised connection,
//!   publishing with confirms; the shutdown signal shared by a process's tasks.
//! - [`cache`] (feature `cache`): Redis beside PostgreSQL — the work cache and shared rate
//!   limits, both failing open.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod auth;
#[cfg(feature = "cache")]
pub mod cache;
pub mod compute;
pub mod config;
pub mod contract;
pub mod db;
pub mod demand;
pub mod error;
pub mod event;
pub mod logging;
pub mod outage;
pub mod schema;
#[cfg(any(feature = "amqp", feature = "listen"))]
pub mod shutdown;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod work;

pub use error::{Error, InputError};
