//! The consumer against the real RabbitMQ and PostgreSQL: each test has its own queue and its own
//! database.

mod end_to_end;
mod faults;
mod flags;
mod helpers;
mod outages;
mod pipeline;
mod process;
mod sweeper;
