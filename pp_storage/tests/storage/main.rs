//! pp_storage against a real PostgreSQL: migrations up and down, the database's guarantees, and
//! the `pp_storage` binary as a user runs it.

mod binary;
mod identities;
mod migrations;
