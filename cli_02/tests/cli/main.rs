//! cli_02's integration tests: the binary against the real API (over its own database) and
//! against tiny servers on 127.0.0.1:0.
//!
//! Each test starts its own server (std threads, no HTTP library) that answers one connection
//! with a scripted reply, nasty or not, and checks what the binary prints and how it exits.

mod api;
mod helpers;
mod hostile;
mod responses;
mod usage;
