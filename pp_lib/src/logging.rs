//! Logging for every binary: `env_logger`, `RUST_LOG` (default `info`), timestamps in UTC.

/// Starts the logger once; later calls (tests call it from many places) are harmless.
///
/// lapin reports its tracing spans through `log` under the `tracing::span` target, one line per
/// connection task: those are kept at `warn` unless `RUST_LOG` names them.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    // try_init fails only when a logger is already installed, which is the state we want.
    let _ = env_logger::Builder::new()
        .filter_module("tracing::span", log::LevelFilter::Warn)
        .parse_env(env)
        .format_timestamp_millis()
        .try_init();
}
