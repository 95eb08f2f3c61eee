//! The consumer against the real RabbitMQ and PostgreSQL: each test has its own queue and its own
//! database.

mod broker_restart;
mod cluster;
mod end_to_end;
mod faults;
mod flags;
mod outages;
mod pipeline;
mod process;
mod quorum;
mod sweeper;
