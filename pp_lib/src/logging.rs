//! Logging for every binary: `env_logger`, `RUST_LOG` (default `info`), timestamps in UTC.

/// Starts the logger once; later calls (tests call it from many places) are harmless.
pub fn init() {
    let env = env_logger::Env::default().default_filter_or("info");
    // try_init fails only when a logger is already installed, which is the state we want.
    let _ = env_logger::Builder::from_env(env)
        .format_timestamp_millis()
        .try_init();
}
