//! A running API over its own database, and ways to run the binary against it.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Output};
use std::time::Duration;

use pp_backend_api::settings::Settings;
use pp_backend_api::startup::Application;
use pp_lib::config::DatabaseConfig;
use pp_lib::work::Work;
use pp_storage::testkit::TestDatabase;

/// The two ways of asking.
pub const VIAS: [&str; 2] = ["http", "db"];

/// Settings for a test API on a free port over `database`.
pub fn api_settings(database: DatabaseConfig) -> Settings {
    // No broker (the relay is off): accepted demands stay in the outbox, where the tests look
    // for them.
    Settings {
        workers: 1,
        ..Settings::local(database)
    }
}

/// Starts the API with `settings`; returns its base URL. It serves until the test's runtime ends.
pub async fn start_api(settings: Settings) -> String {
    let application = Application::build(settings).await.expect("the API builds");
    let url = format!("http://{}", application.address());
    tokio::spawn(application.run_until_stopped(std::future::pending()));
    url
}

/// An API on a free port over a fresh database.
pub struct TestApi {
    pub url: String,
    pub db: TestDatabase,
    pub client: reqwest::Client,
}

pub async fn spawn_api() -> TestApi {
    let db = tokio::task::spawn_blocking(TestDatabase::create)
        .await
        .expect("creating the test database");
    let url = start_api(api_settings(db.config())).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client");
    TestApi { url, db, client }
}

impl TestApi {
    /// Runs cli_01 `--via via` against this API or its database, asking for JSON.
    pub async fn cli(&self, via: &str, args: &[&str]) -> Output {
        let mut all = vec![
            "--via".to_owned(),
            via.to_owned(),
            "--api-url".to_owned(),
            self.url.clone(),
            "--database-url".to_owned(),
            self.db.url().expose().to_owned(),
            "--output".to_owned(),
            "json".to_owned(),
        ];
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        run_cli_async(all).await
    }

    /// Runs cli_01 both ways; asserts both succeed with the same stdout and returns it.
    pub async fn same_both_ways(&self, args: &[&str]) -> String {
        let http = self.cli("http", args).await;
        let db = self.cli("db", args).await;
        assert_exit(&http, 0);
        assert_exit(&db, 0);
        assert_eq!(stdout(&http), stdout(&db), "{args:?}: http, then db");
        stdout(&http)
    }

    /// POST /work with `{"add_up_to": n}`.
    pub async fn create_work(&self, add_up_to: i32) -> Work {
        self.client
            .post(format!("{}/work", self.url))
            .json(&serde_json::json!({ "add_up_to": add_up_to }))
            .send()
            .await
            .expect("POST /work")
            .json()
            .await
            .expect("a work")
    }

    /// The body of `GET path`, as the API sent it.
    pub async fn get_body(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .expect("a body")
    }
}

/// Runs cli_01 with `args` off the async runtime (the API serves on it meanwhile).
pub async fn run_cli_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || run_cli(&args))
        .await
        .expect("the cli_01 task")
}

/// Runs cli_01 with `args`, in an environment that names no API and no database of its own.
pub fn run_cli<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cli_01"))
        .args(args)
        .env_remove("PP_API_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("the cli_01 binary runs")
}

/// A port nothing listens on: bound, then released.
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code, showing the output when it is wrong, and that nothing panicked.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    assert!(!stderr(output).contains("panicked"), "{}", stderr(output));
}

/// Asserts the error is one line in cli_01's format, containing `text`, with nothing on stdout.
pub fn assert_one_line_error(output: &Output, text: &str) {
    let stderr = stderr(output);
    assert!(stderr.starts_with("cli_01: error: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(text), "expected {text:?} in {stderr}");
    assert_eq!(stdout(output), "", "nothing on stdout");
}
