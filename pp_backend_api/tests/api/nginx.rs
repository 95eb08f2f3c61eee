//! Behind Debian's nginx, as people deploy pp: the reference site (`deploy/nginx/pp.conf`, with
//! only the test's addresses, ports and certificate swapped in) and nginx's plainest config.
//! Clients reach nginx from addresses of their own (127.0.0.2, 127.0.0.3: all of 127/8 is this
//! machine), so what pp counts per client shows whom it took the request for.

use std::net::IpAddr;
use std::path::Path;

use pp_backend_api::auth::AuthSetting;
use pp_backend_api::testkit::identities::TEST_PASSWORD;
use pp_backend_api::testkit::raw::RawAnswer;
use pp_backend_api::testkit::{TestApp, TestSettings};
use pp_lib::auth::Role;
use pp_lib::testkit::TestNginx;
use pp_lib::work::Work;
use reqwest::StatusCode;
use serde_json::Value;

/// The reference site, as shipped.
const REFERENCE_SITE: &str = include_str!("../../../deploy/nginx/pp.conf");

/// nginx's plainest proxy: what a new user writes first.
fn plainest_site(api: &str, port: u16) -> String {
    format!("server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://{api}; }} }}\n")
}

/// `text` with `needle`, which must be in it exactly once, replaced: the reference site changing
/// under the test fails it here, loudly, not by testing something else.
fn swap(text: &str, needle: &str, replacement: &str) -> String {
    assert_eq!(
        text.matches(needle).count(),
        1,
        "deploy/nginx/pp.conf has {needle:?} once"
    );
    text.replace(needle, replacement)
}

/// A self-signed certificate for localhost and 127.0.0.1, made with openssl in `dir`.
fn certificate(dir: &Path) {
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("privkey.pem"))
        .arg("-out")
        .arg(dir.join("fullchain.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&made.stderr)
    );
}

/// nginx with the reference site in front of `app`: port 0 plain (it redirects), port 1 HTTPS.
fn reference_proxy(app: &TestApp) -> TestNginx {
    let api = app.host_and_port().to_owned();
    let certs = tempdir();
    certificate(&certs);
    let nginx = TestNginx::start(2, |ports| {
        let site = swap(
            REFERENCE_SITE,
            "server 127.0.0.1:3000;",
            &format!("server {api};"),
        );
        let site = swap(
            &site,
            "listen 80;",
            &format!("listen 127.0.0.1:{};", ports[0]),
        );
        let site = swap(
            &site,
            "listen 443 ssl http2;",
            &format!("listen 127.0.0.1:{} ssl http2;", ports[1]),
        );
        let site = swap(
            &site,
            "/etc/ssl/pp/fullchain.pem",
            &certs.join("fullchain.pem").display().to_string(),
        );
        swap(
            &site,
            "/etc/ssl/pp/privkey.pem",
            &certs.join("privkey.pem").display().to_string(),
        )
    });
    // The certificate stays with nginx (its directory goes when it stops).
    for file in ["fullchain.pem", "privkey.pem"] {
        std::fs::rename(certs.join(file), nginx.dir().join(file)).expect("moving the certificate");
    }
    let _ = std::fs::remove_dir_all(&certs);
    nginx
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(pp_lib::testkit::unique_name());
    std::fs::create_dir_all(&dir).expect("a directory of the test's own");
    dir
}

/// A request through the reference site's HTTPS port, from `client` (a loopback address),
/// checking the certificate made for it. `args` are curl's (method, body, headers).
async fn https(nginx: &TestNginx, client: IpAddr, path: &str, args: &[&str]) -> RawAnswer {
    let port = nginx.ports()[1];
    let output = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "-i",
            "--max-time",
            "30",
            "--interface",
            &client.to_string(),
        ])
        .arg("--cacert")
        .arg(nginx.dir().join("fullchain.pem"))
        .args(args)
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .output()
        .await
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    RawAnswer::parse(&String::from_utf8_lossy(&output.stdout))
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// Behind the reference site, pp names nginx (127.0.0.1) as its trusted proxy.
fn behind_nginx(settings: TestSettings) -> TestSettings {
    settings.with(|settings| {
        settings.origin.trusted_proxies = vec![ip("127.0.0.1")];
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_clients_scenario_passes_through_the_reference_site() {
    // The original's clients send no credentials: an operator who keeps its open API says so.
    let app = TestApp::spawn(behind_nginx(TestSettings::new()).auth(AuthSetting::Off)).await;
    let nginx = reference_proxy(&app);
    let client = ip("127.0.0.2");

    // Plain HTTP is sent to HTTPS.
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client")
        .get(format!("{}/work/1", nginx.url(0)))
        .send()
        .await
        .expect("GET over plain HTTP");
    assert_eq!(plain.status(), StatusCode::MOVED_PERMANENTLY);

    // The original's way to make a random work: a POST without a body, then read it back.
    let created = https(&nginx, client, "/work", &["-X", "POST"]).await;
    assert_eq!(created.status, 200, "{created:?}");
    let work: Work = serde_json::from_value(created.json()).expect("a work");
    let read = https(&nginx, client, &format!("/work/{}", work.id), &[]).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.json(), created.json());
    let given = https(
        &nginx,
        client,
        "/work",
        &[
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"add_up_to": 4}"#,
        ],
    )
    .await;
    assert_eq!(given.json()["add_up_to"], 4, "{given:?}");
    let found = https(
        &nginx,
        client,
        &format!("/work/search?work_code={}", work.work_code),
        &[],
    )
    .await;
    assert_eq!(found.json()[0]["id"], work.id, "{found:?}");
    let demand = https(&nginx, client, "/work/demand", &["-X", "POST"]).await;
    assert_eq!(demand.status, 202, "{demand:?}");
    let missing = https(&nginx, client, "/work/999999999", &[]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.json()["message"].is_string(), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_the_reference_site_limits_and_throttles_count_each_real_client() {
    let settings = behind_nginx(TestSettings::new().redis()).with(|settings| {
        settings.rate_limit.rate = Some("3/m".parse().expect("a rate"));
        settings.rate_limit.burst = Some(3);
        settings.rate_limit.reads = true;
        settings.auth.failures = "1/h".parse().expect("a rate");
    });
    let app = TestApp::spawn(settings).await;
    app.add_account("ada", Role::Operator).await;
    let nginx = reference_proxy(&app);
    let (first, second) = (ip("127.0.0.2"), ip("127.0.0.3"));

    // Reads: the first client spends its quota; the second, behind the same nginx, has its own.
    for _ in 0..3 {
        assert_eq!(https(&nginx, first, "/stats", &[]).await.status, 200);
    }
    let spent = https(&nginx, first, "/stats", &[]).await;
    assert_eq!(spent.status, 429, "{spent:?}");
    assert!(spent.has_header("retry-after"), "{spent:?}");
    assert_eq!(https(&nginx, second, "/stats", &[]).await.status, 200);

    // Logins: five wrong passwords from the first client; then even the right one waits there,
    // and not from the second.
    let login = |password: &str| format!(r#"{{"name": "ada", "password": "{password}"}}"#);
    let json = ["-H", "content-type: application/json", "-d"];
    for attempt in 0..5 {
        let body = login(&format!("wrong {attempt}"));
        let args = [&json[..], &[body.as_str()]].concat();
        let wrong = https(&nginx, first, "/dashboard/api/login", &args).await;
        assert_eq!(wrong.status, 401, "{wrong:?}");
    }
    let right = login(TEST_PASSWORD);
    let args = [&json[..], &[right.as_str()]].concat();
    let waits = https(&nginx, first, "/dashboard/api/login", &args).await;
    assert_eq!(waits.status, 429, "{waits:?}");
    let other = https(&nginx, second, "/dashboard/api/login", &args).await;
    assert_eq!(other.status, 200, "{other:?}");

    // The session cookie is Secure: nginx said the client came over https.
    let cookie = other
        .header("set-cookie")
        .filter(|cookie| cookie.starts_with("pp_session="))
        .unwrap_or_else(|| panic!("a session cookie: {other:?}"));
    assert!(cookie.contains("; secure"), "{cookie}");

    // The audit trail names the clients, not nginx: five failures from the first, the login
    // from the second (the throttled attempt is refused before any password is checked).
    for (source, logins) in [("127.0.0.2", 5), ("127.0.0.3", 1), ("127.0.0.1", 0)] {
        let recorded = app.db.count(&format!(
            "select count(*) as n from audit_events where action = 'login' and source = '{source}'"
        ));
        assert_eq!(recorded, logins, "logins audited from {source}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_proxy_saying_https_the_session_cookie_is_not_secure() {
    let app = TestApp::spawn(TestSettings::new()).await;
    app.add_account("ada", Role::Operator).await;
    // From this machine, with no trusted proxy: a made-up X-Forwarded-Proto is not believed.
    let response = app
        .client
        .post(app.url("/dashboard/api/login"))
        .header("x-forwarded-proto", "https")
        .json(&serde_json::json!({"name": "ada", "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("POST /dashboard/api/login");
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get("set-cookie")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(cookie.starts_with("pp_session="), "{cookie}");
    assert!(!cookie.contains("secure"), "{cookie}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginxs_plainest_config_no_request_is_from_this_machine() {
    // The default: `auto` on loopback, where a request from this machine is held to `off`.
    let app = TestApp::spawn(TestSettings::new().with_queue()).await;
    let nginx = TestNginx::start(1, |ports| plainest_site(app.host_and_port(), ports[0]));
    let through = |path: &str| format!("{}{path}", nginx.url(0));

    // Straight to pp, this machine reads the audit trail; through nginx, nobody does.
    assert_eq!(
        app.get("/dashboard/api/audit").await.status(),
        StatusCode::OK
    );
    let audit = app
        .client
        .get(through("/dashboard/api/audit"))
        .send()
        .await
        .expect("GET through nginx");
    assert_eq!(audit.status(), StatusCode::UNAUTHORIZED);
    let body: Value = audit.json().await.expect("a JSON error");
    assert!(body["message"].is_string(), "{body}");

    // Nor does it enqueue demands from the dashboard (as curl asks: no Origin to refuse).
    let enqueued = app
        .client
        .post(through("/dashboard/api/demands"))
        .json(&serde_json::json!({"count": 1}))
        .send()
        .await
        .expect("POST through nginx");
    assert_eq!(enqueued.status(), StatusCode::UNAUTHORIZED);

    // The original's bodyless POST (nginx sends it upstream over HTTP/1.0, without a length):
    // answered as pp answers it over HTTP/1.1, a JSON refusal without a key, a work with one.
    let anonymous = app
        .client
        .post(through("/work"))
        .send()
        .await
        .expect("POST through nginx");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let body: Value = anonymous.json().await.expect("a JSON error");
    assert!(body["message"].is_string(), "{body}");
    let key = app.create_key("proxied", "read,write");
    let keyed = app
        .client
        .post(through("/work"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("POST through nginx");
    assert_eq!(keyed.status(), StatusCode::OK);
    let work: Work = keyed.json().await.expect("a work");
    assert!(work.work_code.starts_with("api-"), "{work:?}");
    assert!(
        app.metric("pp_api_http_framing_total{reason=\"length_added\"}")
            .await
            >= 2.0
    );
}
