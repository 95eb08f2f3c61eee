//! The API in a test (feature `testkit`): the one way every test, example and tool starts it.
//!
//! [`TestApp::spawn`] builds the real server ([`crate::startup::Application`]) on a free port of
//! 127.0.0.1 over a database of its own, and, when [`TestSettings`] asks, a queue of its own
//! (with the outbox relay publishing to it) and a Redis key prefix of its own; it runs until
//! [`TestApp::stop`] or the value is dropped, and its database, queue and keys go with the last
//! [`TestApp`] that shares them ([`TestApp::replica`] starts another server over the same ones).
//!
//! ```text
//! let app = TestApp::spawn(TestSettings::new()).await;
//! let work = app.create_work(4).await;
//! let relaying = TestApp::spawn(TestSettings::new().relaying().redis()).await;
//! let deadline = TestApp::spawn(TestSettings::new().with(|s| s.deadline = ms(300))).await;
//! ```
//!
//! - [`browser`]: headless Chromium over WebDriver, for the dashboard's tests and screenshots.
//! - [`identities`]: keys, accounts and logins, and requests that carry them.

pub mod browser;
pub mod identities;
pub mod raw;

use std::sync::Arc;
use std::time::Duration;

use pp_lib::config::SecretUrl;
use pp_lib::contract::{DemandAccepted, ErrorBody};
use pp_lib::testkit::wait::finish_in_drop;
use pp_lib::testkit::{TestQueue, TestRedis, eventually};
use pp_lib::work::Work;
use pp_storage::testkit::TestDatabase;
use reqwest::{Response, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::auth::AuthSetting;
use crate::relay::RelayConfig;
use crate::settings::Settings;
use crate::startup::Application;

/// How often a test's relay looks at the outbox when no demand wakes it: often, so a test never
/// waits on it.
pub const TEST_RELAY_INTERVAL: Duration = Duration::from_millis(100);

/// Longest a test's server may take to stop when dropped.
const STOP_PATIENCE: Duration = Duration::from_secs(15);

/// Longest a request of a test's client may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A change to the settings, made once the services are known.
type Change = Box<dyn FnOnce(&mut Settings) + Send>;

/// What a test's API starts with, beyond its own database.
#[derive(Default)]
pub struct TestSettings {
    queue: Option<QueueChoice>,
    relay: bool,
    redis: bool,
    changes: Vec<Change>,
}

enum QueueChoice {
    /// A queue of the app's own.
    Own,
    /// The test's queue, reached through `url` (a proxy in front of the broker, say).
    Given {
        queue: Arc<TestQueue>,
        url: SecretUrl,
    },
}

impl TestSettings {
    /// A server on a free port of 127.0.0.1 over a database of its own, two workers, no relay,
    /// no Redis, no rate limit.
    pub fn new() -> Self {
        TestSettings::default()
    }

    /// A queue of the app's own, which the dashboard reads; no relay publishes to it (accepted
    /// demands stay in the outbox).
    pub fn with_queue(mut self) -> Self {
        self.queue.get_or_insert(QueueChoice::Own);
        self
    }

    /// A queue of the app's own, and the outbox relay publishing to it every
    /// [`TEST_RELAY_INTERVAL`] (the dashboard reads it too).
    pub fn relaying(mut self) -> Self {
        self.relay = true;
        self.with_queue()
    }

    /// The outbox relay (and the dashboard) on `queue`, through `url` (its broker's, or a
    /// proxy's in front of it).
    pub fn relaying_to(mut self, queue: Arc<TestQueue>, url: SecretUrl) -> Self {
        self.relay = true;
        self.queue = Some(QueueChoice::Given { queue, url });
        self
    }

    /// A Redis key prefix of the app's own: the cache on.
    pub fn redis(mut self) -> Self {
        self.redis = true;
        self
    }

    /// `PP_AUTH` as given (a test's server listens on loopback, where `auto` is `off`).
    pub fn auth(self, setting: AuthSetting) -> Self {
        self.with(move |settings| settings.auth.setting = setting)
    }

    /// Any other setting, changed once the database, queue and Redis are known.
    pub fn with(mut self, change: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.changes.push(Box::new(change));
        self
    }
}

/// A running API and what it runs over.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// A client that follows no redirect and waits at most 30 s.
    pub client: reqwest::Client,
    pub db: Arc<TestDatabase>,
    queue: Option<Arc<TestQueue>>,
    redis: Option<Arc<TestRedis>>,
    /// The settings it runs with.
    pub settings: Settings,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the API over fresh services, as `settings` asks.
    pub async fn spawn(settings: TestSettings) -> TestApp {
        let db = Arc::new(TestDatabase::create_async().await);
        let (queue, relay_url) = match settings.queue {
            None => (None, None),
            Some(QueueChoice::Own) => {
                let queue = Arc::new(TestQueue::create().await);
                let url = queue.url().clone();
                (Some(queue), Some(url))
            }
            Some(QueueChoice::Given { queue, url }) => (Some(queue), Some(url)),
        };
        let redis = settings.redis.then(|| Arc::new(TestRedis::create()));
        let mut config = Settings {
            workers: 2,
            shutdown_timeout: Duration::from_secs(10),
            ..Settings::local(db.config())
        };
        if let (Some(queue), Some(url)) = (&queue, relay_url) {
            config.relay = RelayConfig {
                enabled: settings.relay,
                interval: TEST_RELAY_INTERVAL,
                ..RelayConfig::to(queue.config_via(url))
            };
        }
        if let Some(redis) = &redis {
            config.redis = redis.config();
        }
        for change in settings.changes {
            change(&mut config);
        }
        TestApp::start(db, queue, redis, config).await
    }

    /// Another server over the same database, queue and Redis, with these settings changed.
    pub async fn replica(&self, change: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        change(&mut settings);
        TestApp::start(
            self.db.clone(),
            self.queue.clone(),
            self.redis.clone(),
            settings,
        )
        .await
    }

    async fn start(
        db: Arc<TestDatabase>,
        queue: Option<Arc<TestQueue>>,
        redis: Option<Arc<TestRedis>>,
        settings: Settings,
    ) -> TestApp {
        let application = Application::build(settings.clone())
            .await
            .unwrap_or_else(|error| panic!("the API does not build: {error:#}"));
        let address = format!("http://{}", application.address());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(application.run_until_stopped(async {
            let _ = stopped.await;
        }));
        TestApp {
            address,
            client: reqwest::Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("a client (no TLS, no proxy) builds"),
            db,
            queue,
            redis,
            settings,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// The app's queue; panics when it was spawned without one.
    pub fn queue(&self) -> &TestQueue {
        self.queue
            .as_deref()
            .expect("the app has a queue: spawn it with TestSettings::with_queue or relaying")
    }

    /// The app's Redis key prefix; panics when it was spawned without one.
    pub fn redis(&self) -> &TestRedis {
        self.redis
            .as_deref()
            .expect("the app has Redis: spawn it with TestSettings::redis")
    }

    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// The host and port, for clients that take no URL (cli_02).
    pub fn host_and_port(&self) -> &str {
        self.address.trim_start_matches("http://")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// `GET path`, expecting 200 and JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response
            .json()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
    }

    /// The body of `GET path`, as the API sent it.
    pub async fn get_text(&self, path: &str) -> String {
        self.get(path)
            .await
            .text()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"))
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

    /// `POST path` with a JSON body, when given.
    pub async fn post(&self, path: &str, body: Option<&str>) -> Response {
        let mut request = self.client.post(self.url(path));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        request
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"))
    }

    pub async fn post_work(&self, body: Option<&str>) -> Response {
        self.post("/work", body).await
    }

    /// `POST /work` with `{"add_up_to": n}`, expecting 200 and the work.
    pub async fn create_work(&self, add_up_to: i32) -> Work {
        let response = self
            .post_work(Some(&format!(r#"{{"add_up_to": {add_up_to}}}"#)))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("a work")
    }

    /// `POST /work/demand` with `{"add_up_to": n}`, expecting 202; the demand's message id.
    pub async fn post_demand(&self, add_up_to: i32) -> uuid::Uuid {
        let response = self
            .post(
                "/work/demand",
                Some(&format!(r#"{{"add_up_to": {add_up_to}}}"#)),
            )
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let accepted: DemandAccepted = response.json().await.expect("a demand accepted");
        accepted.message_id
    }

    /// The sum of the samples of the metric `name` in `/metrics` (every label of it; or one
    /// sample, when `name` includes its labels); 0 when there is none.
    pub async fn metric(&self, name: &str) -> f64 {
        self.get_text("/metrics")
            .await
            .lines()
            .filter(|line| {
                // The name whole: `pp_api_x` is not `pp_api_x_total`.
                line.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with([' ', '{']) || name.ends_with('}'))
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `/readyz` says `"cache": state` (Redis connects in the background).
    pub async fn eventually_cache(&self, state: &str) {
        eventually(&format!("the cache to be {state}"), async || {
            let health = self.get_text("/readyz").await;
            let health: serde_json::Value =
                serde_json::from_str(&health).unwrap_or_else(|_| panic!("readiness: {health}"));
            if health["cache"] == state {
                Ok(())
            } else {
                Err(health)
            }
        })
        .await;
    }

    /// Stops the server as SIGTERM would and waits until it has finished.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.server.take() {
            Some(server) => server.await.expect("the server task does not panic"),
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // A test that ends without stopping its server (or panics) stops it here, and lets it
        // finish (where the runtime allows) before its database, queue and keys are removed.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            finish_in_drop(STOP_PATIENCE, server);
        }
    }
}

/// The `Preference-Applied` an answer carries (`wait=N` when the request waited), if any.
pub fn applied_wait(response: &Response) -> Option<&str> {
    response
        .headers()
        .get("preference-applied")
        .and_then(|value| value.to_str().ok())
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
