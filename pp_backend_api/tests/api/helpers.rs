//! `spawn_app()` and typed request helpers.

use std::time::Duration;

use pp_backend_api::settings::Settings;
use pp_backend_api::startup::Application;
use pp_lib::config::DatabaseConfig;
use pp_lib::contract::ErrorBody;
use pp_lib::work::Work;
use pp_storage::testkit::TestDatabase;
use reqwest::{Response, StatusCode};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running API over its own database. Dropping it drops the database.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub db: TestDatabase,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test server on a free port over `database`.
pub fn test_settings(database: DatabaseConfig) -> Settings {
    Settings {
        workers: 2,
        shutdown_timeout: Duration::from_secs(10),
        ..Settings::local(database)
    }
}

/// Starts the API on a random port over a fresh database.
pub async fn spawn_app() -> TestApp {
    let db = tokio::task::spawn_blocking(TestDatabase::create)
        .await
        .expect("creating the test database");
    let settings = test_settings(db.config());
    spawn_app_with(db, settings).await
}

/// Starts the API with these settings; `db` is kept for the test's own queries.
pub async fn spawn_app_with(db: TestDatabase, settings: Settings) -> TestApp {
    let application = Application::build(settings).await.expect("the app builds");
    let address = format!("http://{}", application.address());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client"),
        db,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_work(&self, body: Option<&str>) -> Response {
        let mut request = self.client.post(self.url("/work"));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request.send().await.expect("POST /work")
    }

    /// POST /work with `{"add_up_to": n}`, expecting 200 and the work.
    pub async fn create_work(&self, add_up_to: i32) -> Work {
        let response = self
            .post_work(Some(&format!(r#"{{"add_up_to": {add_up_to}}}"#)))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a work")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn get_work(&self, id: i64) -> Response {
        self.get(&format!("/work/{id}")).await
    }

    pub async fn search(&self, query: &[(&str, &str)]) -> Response {
        self.client
            .get(self.url("/work/search"))
            .query(query)
            .send()
            .await
            .expect("GET /work/search")
    }

    /// Stops the server as SIGTERM would and waits until it has finished.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("the server task"),
            None => Ok(()),
        }
    }
}

/// Reads an error answer: asserts the status and the JSON body's `http_code`, returns `message`.
pub async fn error_message(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    assert_eq!(body.http_code, status.as_u16(), "{body:?}");
    body.message
}
