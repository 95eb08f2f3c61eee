//! Headless Chromium driven over W3C WebDriver, through Debian's `chromedriver`: the dashboard's
//! browser tests and `make screenshots` look at a live pipeline through it.
//!
//! WebDriver is JSON over HTTP: the dozen commands they need (open a session, load a
//! page, find, read, click, type, run a script, take a screenshot) are a few lines each on the
//! HTTP client the tests already use, so no WebDriver crate (and its TLS stack) is compiled.
//!
//! Each [`Browser`] runs its own chromedriver on a reserved port of 127.0.0.1, in a process group of
//! its own, with a fresh profile directory: tests run in parallel, and dropping the value (even
//! in a panicking test) ends that chromedriver and the Chromium it started. Chromium runs with
//! every background network feature off: this machine has no network, and Chromium would
//! otherwise wait on connections that never come.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use pp_lib::testkit::ports::{PORT_ATTEMPTS, PortReservation, reserve_port};
use pp_lib::testkit::{eventually, unique_name};
use serde_json::{Value, json};

/// Where Debian installs them (`make test` does, through `scripts/install.sh chromium`).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C identifier of an element in WebDriver's JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium, with its own chromedriver and profile.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    driver: Child,
    /// chromedriver's port, reserved while it runs.
    port: PortReservation,
    profile: PathBuf,
}

/// The Chromium window's size, in CSS pixels.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub width: u32,
    pub height: u32,
    /// Device pixels per CSS pixel: above 1, Chromium emulates a phone's screen (headless
    /// Chromium's windows are at least 500 pixels wide, a phone's viewport is narrower).
    pub pixel_ratio: u32,
}

pub const LAPTOP: Window = Window {
    width: 1280,
    height: 800,
    pixel_ratio: 1,
};
pub const PHONE: Window = Window {
    width: 390,
    height: 844,
    pixel_ratio: 2,
};

fn find_program(path: &str) -> String {
    if std::path::Path::new(path).exists() {
        return path.to_owned();
    }
    panic!(
        "{path} is missing: the browser tests need Debian's chromium and chromium-driver. Run \
         `scripts/install.sh chromium` (`make test` does), or `apt-get install chromium chromium-driver`."
    );
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a window of `window`'s size.
    pub async fn open(window: Window) -> Browser {
        let chromium = find_program(CHROMIUM);
        let chromedriver = find_program(CHROMEDRIVER);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client without TLS or proxy builds");
        let profile = std::env::temp_dir().join(unique_name());
        std::fs::create_dir_all(&profile)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", profile.display()));
        let (driver, port) = start_driver(&http, &chromedriver, &profile).await;
        // Made as soon as chromedriver answers, so that dropping it ends chromedriver whatever
        // fails next.
        let mut browser = Browser {
            http,
            session: String::new(),
            driver,
            port,
            profile,
        };
        let base = browser.base();
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={},{}", window.width, window.height),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        let mut options = json!({"binary": chromium, "args": args});
        if window.pixel_ratio > 1 {
            options["mobileEmulation"] = json!({"deviceMetrics": {
                "width": window.width,
                "height": window.height,
                "pixelRatio": window.pixel_ratio,
            }});
        }
        let created = browser
            .http
            .post(format!("{base}/session"))
            .json(&json!({
                "capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": options,
                }}
            }))
            .send()
            .await
            .expect("POST /session")
            .json::<Value>()
            .await
            .expect("a session");
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver made no session: {created}"));
        browser.session = format!("{base}/session/{session}");
        browser
    }

    /// chromedriver's address.
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port.port())
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let mut request = self.http.request(method.clone(), &url);
        if method == reqwest::Method::POST {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"))
            .json()
            .await
            .unwrap_or_else(|error| panic!("{method} {path}: {error}"));
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                answer["value"]["message"]
            );
        }
        answer["value"].clone()
    }

    /// Loads `url` and waits until the page is loaded.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its result.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element id for {css}: {found}"))
            .to_owned()
    }

    /// Clicks the element `css` selects (it must be there). An element the page replaced
    /// between finding and clicking (a live refresh) is found again.
    pub async fn click(&self, css: &str) {
        eventually(&format!("a click on {css}"), async || {
            let id = self.wait_for_element(css).await;
            let answer: Value = self
                .http
                .post(format!("{}/element/{id}/click", self.session))
                .json(&json!({}))
                .send()
                .await
                .unwrap_or_else(|error| panic!("click {css}: {error}"))
                .json()
                .await
                .unwrap_or_else(|error| panic!("click {css}: {error}"));
            match answer["value"]["error"].as_str() {
                None => Ok(()),
                Some("stale element reference") => Err("replaced before it could be clicked"),
                Some(error) => panic!("click {css}: {error}: {}", answer["value"]["message"]),
            }
        })
        .await;
    }

    /// Types `text` into the element `css` selects, after clearing it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.wait_for_element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// The visible text of the first element `css` selects, or `None` when there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        self.execute(
            "const node = document.querySelector(arguments[0]); \
             return node === null ? null : node.innerText;",
            json!([css]),
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// The visible texts of every element `css` selects, in document order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let texts = self
            .execute(
                "return Array.from(document.querySelectorAll(arguments[0])) \
                 .map((node) => node.innerText);",
                json!([css]),
            )
            .await;
        texts
            .as_array()
            .map(|texts| {
                texts
                    .iter()
                    .filter_map(|text| text.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn wait_for_element(&self, css: &str) -> String {
        self.wait_for_text(css, |_| true).await;
        self.element(css).await
    }

    /// Waits until the element `css` selects exists, is shown, and its text satisfies `wanted`;
    /// returns the text. Fails with the last text seen after the testkit's patience.
    pub async fn wait_for_text(&self, css: &str, wanted: impl Fn(&str) -> bool) -> String {
        eventually(&format!("{css} to show what is expected"), async || {
            let shown = self
                .execute(
                    "const node = document.querySelector(arguments[0]); \
                     return node === null || node.offsetParent === null && \
                     getComputedStyle(node).position !== 'fixed' ? null : node.innerText;",
                    json!([css]),
                )
                .await;
            match shown.as_str() {
                Some(text) if wanted(text) => Ok(text.to_owned()),
                other => Err(other.map(str::to_owned)),
            }
        })
        .await
    }

    /// A PNG of the window as it is now.
    pub async fn screenshot(&self) -> Vec<u8> {
        let encoded = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .expect("a base64 PNG")
    }

    /// Ends the session, then chromedriver.
    pub async fn close(self) {
        let _ = self.http.delete(&self.session).send().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        end_group(&mut self.driver);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Ends a process and its whole group (chromedriver and the Chromium processes it started).
fn end_group(leader: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", leader.id())])
        .stderr(Stdio::null())
        .status();
    let _ = leader.wait();
}

/// What chromedriver prints when its port is taken.
const PORT_TAKEN_SIGNS: [&str; 2] = ["Address already in use", "port not available"];

/// Starts chromedriver on a reserved port, in a process group of its own, its output in
/// `profile`, and waits until it answers; on another port when another program took the
/// reserved one before chromedriver bound it.
async fn start_driver(
    http: &reqwest::Client,
    chromedriver: &str,
    profile: &std::path::Path,
) -> (Child, PortReservation) {
    let log = profile.join("chromedriver.log");
    let mut taken = Vec::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = reserve_port();
        let output = std::fs::File::create(&log)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", log.display()));
        let mut command = Command::new(chromedriver);
        command
            .arg(format!("--port={}", port.port()))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("a second handle on an open file"))
            .stderr(output);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut driver = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {chromedriver}: {error}"));
        let status = format!("http://127.0.0.1:{}/status", port.port());
        let answered = eventually(
            &format!("chromedriver to answer on port {}", port.port()),
            async || {
                // Its own answer: another program may hold the port.
                if let Ok(Some(exited)) = driver.try_wait() {
                    return Ok(Err(exited));
                }
                match http.get(&status).send().await {
                    Ok(response) if response.status().is_success() => Ok(Ok(())),
                    Ok(response) => Err(response.status().to_string()),
                    Err(error) => Err(error.to_string()),
                }
            },
        )
        .await;
        match answered {
            Ok(()) if matches!(driver.try_wait(), Ok(None)) => return (driver, port),
            _ => end_group(&mut driver),
        }
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        if !PORT_TAKEN_SIGNS.iter().any(|sign| printed.contains(sign)) {
            panic!(
                "chromedriver did not start on port {}: {printed}",
                port.port()
            );
        }
        taken.push(format!("port {}: {}", port.port(), printed.trim()));
    }
    panic!(
        "chromedriver could not start: another program took its port {PORT_ATTEMPTS} times, on \
         other ports each time:\n{}",
        taken.join("\n")
    );
}
