//! Running the cli_01 binary in a test: against a `TestApp` (the API on a free port over a
//! database of its own), through the API or straight from its database.

use std::process::{Command, Output};

use pp_backend_api::testkit::TestApp;
use pp_lib::testkit::process::{assert_exit, stdout};

/// The two ways of asking.
pub const VIAS: [&str; 2] = ["http", "db"];

/// cli_01 run against a test's API.
pub trait RunCli {
    /// Runs cli_01 `--via via` against this API or its database, asking for JSON.
    async fn cli(&self, via: &str, args: &[&str]) -> Output;

    /// Runs cli_01 both ways; asserts both succeed with the same stdout and returns it.
    async fn same_both_ways(&self, args: &[&str]) -> String;
}

impl RunCli for TestApp {
    async fn cli(&self, via: &str, args: &[&str]) -> Output {
        let mut all = vec![
            "--via".to_owned(),
            via.to_owned(),
            "--api-url".to_owned(),
            self.address.clone(),
            "--database-url".to_owned(),
            self.db.url().expose().to_owned(),
            "--output".to_owned(),
            "json".to_owned(),
        ];
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        run_cli_async(all).await
    }

    async fn same_both_ways(&self, args: &[&str]) -> String {
        let http = self.cli("http", args).await;
        let db = self.cli("db", args).await;
        assert_exit(&http, 0);
        assert_exit(&db, 0);
        assert_eq!(stdout(&http), stdout(&db), "{args:?}: http, then db");
        stdout(&http)
    }
}

/// Runs cli_01 with `args` off the async runtime (the API serves on it meanwhile).
pub async fn run_cli_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || run_cli(&args))
        .await
        .expect("the cli_01 task")
}

/// Runs cli_01 with `args`, in an environment that names no API, no key and no database of its
/// own.
pub fn run_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    run_cli_with(args, &[])
}

/// [`run_cli`] with these environment variables set.
pub fn run_cli_with<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cli_01"))
        .args(args)
        .env_remove("PP_API_URL")
        .env_remove("PP_API_KEY")
        .env_remove("DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("the cli_01 binary runs")
}

/// Asserts the error is one line in cli_01's format, containing `text`, with nothing on stdout.
pub fn assert_one_line_error(output: &Output, text: &str) {
    pp_lib::testkit::process::assert_one_line_error(output, "cli_01", text);
}
