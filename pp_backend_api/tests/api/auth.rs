//! Who may do what: `PP_AUTH`'s modes over every route and every kind of credential, keys made,
//! revoked and expired, logins and their sessions, failures throttled, cross-site changes
//! refused, the audit trail, the security headers, and the OpenAPI document saying all of it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use pp_backend_api::auth::AuthSetting;
use pp_backend_api::settings::Settings;
use pp_backend_api::testkit::identities::{Credential, TEST_PASSWORD, session_cookie};
use pp_backend_api::testkit::{TestApp, TestSettings, error_message};
use pp_lib::auth::{Role, new_api_token};
use pp_lib::db::works::insert_work;
use pp_lib::testkit::eventually;
use pp_lib::work::NewWork;
use reqwest::{Response, StatusCode};
use serde_json::Value;

const ADMIN_TOKEN: &str = "a-test-admin-token-0123456789";

/// What a route needs, as the README's table says (written out here, not read from the code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Health, readiness, metrics, the page and its login: never an identity.
    Nothing,
    Read,
    Write,
    Operate,
}

/// Every route: method, the path asked, the path as the OpenAPI document writes it, what it
/// needs. Logout comes last: it ends the session that asks.
const ROUTES: &[(&str, &str, &str, Needs)] = &[
    ("POST", "/work", "/work", Needs::Write),
    ("GET", "/work/search", "/work/search", Needs::Read),
    ("POST", "/work/demand", "/work/demand", Needs::Write),
    (
        "GET",
        "/work/demand/67e55044-10b1-426f-9247-bb680e5fe0c8",
        "/work/demand/{message_id}",
        Needs::Read,
    ),
    ("GET", "/work/1", "/work/{id}", Needs::Read),
    ("GET", "/work/1/events", "/work/{id}/events", Needs::Read),
    ("GET", "/stats", "/stats", Needs::Read),
    ("GET", "/healthz", "/healthz", Needs::Nothing),
    ("GET", "/readyz", "/readyz", Needs::Nothing),
    ("GET", "/metrics", "/metrics", Needs::Nothing),
    ("GET", "/api-docs/openapi.json", "", Needs::Read),
    ("GET", "/", "", Needs::Nothing),
    ("GET", "/dashboard/app.js", "", Needs::Nothing),
    ("GET", "/dashboard/app.css", "", Needs::Nothing),
    ("GET", "/login", "", Needs::Nothing),
    (
        "POST",
        "/dashboard/api/login",
        "/dashboard/api/login",
        Needs::Nothing,
    ),
    (
        "GET",
        "/dashboard/api/session",
        "/dashboard/api/session",
        Needs::Read,
    ),
    (
        "GET",
        "/dashboard/api/overview",
        "/dashboard/api/overview",
        Needs::Read,
    ),
    (
        "GET",
        "/dashboard/api/dead-letters",
        "/dashboard/api/dead-letters",
        Needs::Read,
    ),
    (
        "GET",
        "/dashboard/api/audit",
        "/dashboard/api/audit",
        Needs::Operate,
    ),
    (
        "POST",
        "/dashboard/api/dead-letters/retry-all",
        "/dashboard/api/dead-letters/retry-all",
        Needs::Operate,
    ),
    (
        "POST",
        "/dashboard/api/dead-letters/k-1/retry",
        "/dashboard/api/dead-letters/{key}/retry",
        Needs::Operate,
    ),
    (
        "POST",
        "/dashboard/api/dead-letters/k-1/discard",
        "/dashboard/api/dead-letters/{key}/discard",
        Needs::Operate,
    ),
    (
        "POST",
        "/dashboard/api/demands",
        "/dashboard/api/demands",
        Needs::Operate,
    ),
    (
        "POST",
        "/dashboard/api/logout",
        "/dashboard/api/logout",
        Needs::Nothing,
    ),
];

/// What a credential proves: nothing valid, or these scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proves {
    Anonymous,
    Invalid,
    Scopes(&'static [Needs]),
}

async fn request(app: &TestApp, method: &str, path: &str, credential: &Credential) -> Response {
    match method {
        "GET" => app.get_as(path, credential).await,
        _ => app.post_as(path, None, credential).await,
    }
}

/// The same, naming `host` (and the app's port) in `Host`, as a page of that host's would once
/// its name points at 127.0.0.1.
async fn request_naming(
    app: &TestApp,
    host: &str,
    method: &str,
    path: &str,
    credential: &Credential,
) -> Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    credential
        .on(rebound(app, method, path, host))
        .send()
        .await
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The API in `setting`, with a queue of its own (the dashboard's actions touch it only), the
/// admin token, failures never throttled (the matrix fails on purpose, many times).
async fn spawn(setting: AuthSetting) -> TestApp {
    TestApp::spawn(TestSettings::new().with_queue().auth(setting).with(
        |settings: &mut Settings| {
            settings.dashboard.admin_token = Some(ADMIN_TOKEN.parse().expect("a token"));
            settings.auth.failures = "100000/s".parse().expect("a rate");
        },
    ))
    .await
}

/// Every kind of credential the app can be shown, made in its database, and what each proves.
async fn credentials(app: &TestApp) -> Vec<(&'static str, Credential, Proves)> {
    let revoked = app.revoked_key("revoked", "read,write,operate");
    let expired = app.expired_key("expired", "read,write,operate");
    app.add_account("viewer", Role::Viewer).await;
    app.add_account("operator", Role::Operator).await;
    let read = app.create_key("reader", "read");
    let write = app.create_key("writer", "write");
    let operate = app.create_key("operator-key", "operate");
    let every = app.create_key("every", "read,write,operate");
    use Needs::{Operate, Read, Write};
    vec![
        ("none", Credential::None, Proves::Anonymous),
        (
            "malformed",
            Credential::Bearer("not-a-key".to_owned()),
            Proves::Invalid,
        ),
        (
            "unknown",
            Credential::Bearer(new_api_token().expose().to_owned()),
            Proves::Invalid,
        ),
        ("revoked", Credential::Bearer(revoked), Proves::Invalid),
        ("expired", Credential::Bearer(expired), Proves::Invalid),
        (
            "wrong admin token",
            Credential::AdminToken("not-the-admin-token-at-all".to_owned()),
            Proves::Invalid,
        ),
        (
            "read key",
            Credential::Bearer(read),
            Proves::Scopes(&[Read]),
        ),
        (
            "write key",
            Credential::ApiKey(write),
            Proves::Scopes(&[Write]),
        ),
        (
            "operate key",
            Credential::Bearer(operate),
            Proves::Scopes(&[Operate]),
        ),
        (
            "every scope",
            Credential::ApiKey(every),
            Proves::Scopes(&[Read, Write, Operate]),
        ),
        (
            "viewer",
            app.session("viewer").await,
            Proves::Scopes(&[Read]),
        ),
        (
            "operator",
            app.session("operator").await,
            Proves::Scopes(&[Read, Write, Operate]),
        ),
        (
            "admin token",
            Credential::AdminToken(ADMIN_TOKEN.to_owned()),
            Proves::Scopes(&[Read, Write, Operate]),
        ),
    ]
}

/// What `needs` asks of a request in `mode` (`writes` or `all`).
fn asked(mode: AuthSetting, needs: Needs) -> Option<Needs> {
    match (mode, needs) {
        (_, Needs::Nothing) | (AuthSetting::Writes, Needs::Read) => None,
        (_, needs) => Some(needs),
    }
}

/// The status class the guard must give, or `None` where the route answers for itself. Under
/// `auto` on loopback, a request naming another host is held to `writes`.
fn expected(mode: AuthSetting, needs: Needs, proves: Proves) -> Option<StatusCode> {
    if needs == Needs::Nothing {
        return None;
    }
    let held = match mode {
        AuthSetting::Auto => AuthSetting::Writes,
        mode => mode,
    };
    let asked = asked(held, needs);
    match proves {
        // Where nothing is needed, what authenticates no one is ignored.
        Proves::Invalid if asked.is_some() => Some(StatusCode::UNAUTHORIZED),
        // Nobody, held to writes only for the host it names: 403, naming PP_ALLOWED_HOSTS.
        Proves::Anonymous if asked.is_some() && mode == AuthSetting::Auto => {
            Some(StatusCode::FORBIDDEN)
        }
        Proves::Anonymous if asked.is_some() => Some(StatusCode::UNAUTHORIZED),
        Proves::Scopes(scopes) if asked.is_some_and(|needed| !scopes.contains(&needed)) => {
            Some(StatusCode::FORBIDDEN)
        }
        _ => None,
    }
}

/// Every route with every credential in `mode`; under `auto` (on loopback, `off` for this
/// machine) every request names another host.
async fn assert_matrix(mode: AuthSetting) {
    let app = spawn(mode).await;
    insert_work(&mut app.db.connect(), &NewWork::from_api(4)).expect("work 1");
    let mut wrong = Vec::new();
    for (name, credential, proves) in credentials(&app).await {
        for (method, path, _, needs) in ROUTES {
            let response = match mode {
                AuthSetting::Auto => {
                    request_naming(&app, "evil.example", method, path, &credential).await
                }
                _ => request(&app, method, path, &credential).await,
            };
            let status = response.status();
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let fine = match expected(mode, *needs, proves) {
                Some(StatusCode::UNAUTHORIZED) => {
                    status == StatusCode::UNAUTHORIZED
                        && challenge.starts_with("Bearer realm=\"pp\"")
                        && (proves != Proves::Invalid || challenge.contains("invalid_token"))
                }
                Some(StatusCode::FORBIDDEN) if proves == Proves::Anonymous => {
                    status == StatusCode::FORBIDDEN && challenge.is_empty()
                }
                Some(StatusCode::FORBIDDEN) => {
                    status == StatusCode::FORBIDDEN
                        && challenge.contains("error=\"insufficient_scope\"")
                }
                _ => {
                    !matches!(
                        status,
                        StatusCode::UNAUTHORIZED
                            | StatusCode::FORBIDDEN
                            | StatusCode::TOO_MANY_REQUESTS
                    ) && !status.is_server_error()
                }
            };
            if !fine {
                wrong.push(format!(
                    "{mode:?} {name}: {method} {path} ({needs:?}) answered {status} {challenge}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_writes_every_route_answers_every_credential_as_its_scope_says() {
    assert_matrix(AuthSetting::Writes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_every_route_answers_every_credential_as_its_scope_says() {
    assert_matrix(AuthSetting::All).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_a_request_naming_another_host_answers_every_credential_as_writes_says() {
    assert_matrix(AuthSetting::Auto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_table_of_routes_is_the_documents_and_the_document_says_what_each_needs() {
    let app = spawn(AuthSetting::All).await;
    let document = app
        .get_as(
            "/api-docs/openapi.json",
            &Credential::AdminToken(ADMIN_TOKEN.to_owned()),
        )
        .await
        .json::<Value>()
        .await
        .expect("the document");
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("an item") {
            documented.insert((method.to_uppercase(), path.clone()));
            let needs = ROUTES
                .iter()
                .find(|(m, _, template, _)| m.eq_ignore_ascii_case(method) && template == path)
                .map(|(.., needs)| *needs)
                .unwrap_or_else(|| panic!("{method} {path} is documented, not in the table"));
            let security = &operation["security"];
            match needs {
                Needs::Nothing => assert!(
                    security.is_null() || security == &serde_json::json!([]),
                    "{method} {path}: {security}"
                ),
                needs => {
                    let scope = format!("{needs:?}").to_lowercase();
                    assert_eq!(
                        security[0],
                        serde_json::json!({"bearer": [scope]}),
                        "{method} {path}"
                    );
                    assert!(operation["responses"]["401"].is_object(), "{method} {path}");
                    assert!(operation["responses"]["403"].is_object(), "{method} {path}");
                }
            }
        }
    }
    let tabled: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|(.., template, _)| !template.is_empty())
        .map(|(method, _, template, _)| ((*method).to_owned(), (*template).to_owned()))
        .collect();
    assert_eq!(documented, tabled);
    for scheme in ["bearer", "api_key", "session", "admin_token"] {
        assert!(
            document["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }

    let off = TestApp::spawn(TestSettings::new()).await;
    let open = off.get_json("/api-docs/openapi.json").await;
    assert!(
        open["paths"]["/work"]["post"]["security"].is_null(),
        "off asks nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_on_loopback_asks_nothing_and_ignores_what_it_cannot_use() {
    let app = TestApp::spawn(TestSettings::new().with_queue()).await;
    app.create_work(4).await;
    for (method, path, _, _) in ROUTES {
        let response = request(&app, method, path, &Credential::None).await;
        let status = response.status();
        assert!(
            !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
            "{method} {path}: {status}"
        );
    }
    // A proxy in front makes the API exposed: what it forwards is held to writes.
    for forwarded in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        let proxied = app
            .client
            .post(app.url("/work"))
            .header(forwarded, "203.0.113.7")
            .send()
            .await
            .expect("POST");
        assert_eq!(proxied.status(), StatusCode::UNAUTHORIZED, "{forwarded}");
        let read = app
            .client
            .get(app.url("/stats"))
            .header(forwarded, "203.0.113.7")
            .send()
            .await
            .expect("GET");
        assert_eq!(
            read.status(),
            StatusCode::OK,
            "{forwarded}: reads stay open"
        );
    }
    // Clients that named themselves with X-Api-Key (a rate-limit bucket, before keys) and
    // garbage tokens go on working, never throttled.
    for attempt in 0..20 {
        for credential in [
            Credential::ApiKey(format!("client-{attempt}")),
            Credential::Bearer(new_api_token().expose().to_owned()),
        ] {
            let created = app.post_as("/work", None, &credential).await;
            assert_eq!(created.status(), StatusCode::OK, "{credential:?}");
        }
    }
}

/// `settings` behind a proxy on 127.0.0.1 (so each request names its client in
/// `X-Forwarded-For`) that allows one failure an hour: the test's own pace gives nothing back
/// while it runs.
fn behind_a_proxy_with_one_failure_an_hour(settings: TestSettings) -> TestSettings {
    settings.with(|settings| {
        settings.origin.trusted_proxies = vec![IpAddr::from([127, 0, 0, 1])];
        settings.auth.failures = "1/h".parse().expect("a rate");
    })
}

/// A request to `app` naming `host` (with its port) in `Host`, as a page of that host's would
/// send it once its name points at 127.0.0.1 (DNS rebinding): `Origin` its own, and
/// `Sec-Fetch-Site: same-origin`.
fn rebound(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    host: &str,
) -> reqwest::RequestBuilder {
    let port = app.host_and_port().rsplit(':').next().unwrap_or_default();
    let named = format!("{host}:{port}");
    app.client
        .request(method, app.url(path))
        .header("host", &named)
        .header("origin", format!("http://{named}"))
        .header("sec-fetch-site", "same-origin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_loopback_a_request_naming_another_host_is_held_to_writes_and_told_of_allowed_hosts() {
    let app = TestApp::spawn(TestSettings::new().with_queue()).await;
    let operator_key = app.create_key("ops", "read,write,operate");
    use reqwest::Method;

    let audit = request_naming(
        &app,
        "evil.example",
        "GET",
        "/dashboard/api/audit",
        &Credential::None,
    )
    .await;
    let message = error_message(audit, StatusCode::FORBIDDEN).await;
    assert!(message.contains("PP_ALLOWED_HOSTS"), "{message}");
    assert!(message.contains("evil.example"), "{message}");
    for (method, path) in [
        (Method::POST, "/dashboard/api/demands"),
        (Method::POST, "/dashboard/api/dead-letters/retry-all"),
        (Method::POST, "/work"),
        (Method::POST, "/work/demand"),
    ] {
        let refused = request_naming(
            &app,
            "evil.example",
            method.as_str(),
            path,
            &Credential::None,
        )
        .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    assert_eq!(
        app.db.count("select count(*) as n from demand_outbox"),
        0,
        "nothing enqueued"
    );
    let read = request_naming(&app, "evil.example", "GET", "/stats", &Credential::None).await;
    assert_eq!(
        read.status(),
        StatusCode::OK,
        "held to writes: reads stay open"
    );
    let with_key = request_naming(
        &app,
        "evil.example",
        "GET",
        "/dashboard/api/audit",
        &Credential::Bearer(operator_key.clone()),
    )
    .await;
    assert_eq!(
        with_key.status(),
        StatusCode::OK,
        "an identity is let through"
    );
    for host in ["localhost", "127.0.0.1", "[::1]", "app.localhost"] {
        let local =
            request_naming(&app, host, "GET", "/dashboard/api/audit", &Credential::None).await;
        assert_eq!(local.status(), StatusCode::OK, "{host} is this machine");
    }
    let created = request_naming(&app, "localhost", "POST", "/work", &Credential::None).await;
    assert_eq!(
        created.status(),
        StatusCode::OK,
        "the original's bodyless POST"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_in_allowed_hosts_is_this_machine_and_off_said_outright_still_guards_the_actions() {
    let allowed = TestApp::spawn(TestSettings::new().with_queue().with(
        |settings: &mut Settings| {
            settings.origin.allowed_hosts = vec!["pp.test".to_owned(), "*.pp.test".to_owned()];
        },
    ))
    .await;
    for host in ["pp.test", "api.pp.test"] {
        let audit = request_naming(
            &allowed,
            host,
            "GET",
            "/dashboard/api/audit",
            &Credential::None,
        )
        .await;
        assert_eq!(audit.status(), StatusCode::OK, "{host}");
    }
    let other = request_naming(
        &allowed,
        "evil.example",
        "GET",
        "/dashboard/api/audit",
        &Credential::None,
    )
    .await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);

    let off = TestApp::spawn(TestSettings::new().with_queue().auth(AuthSetting::Off)).await;
    let action = request_naming(
        &off,
        "evil.example",
        "POST",
        "/dashboard/api/demands",
        &Credential::None,
    )
    .await;
    let message = error_message(action, StatusCode::FORBIDDEN).await;
    assert!(message.contains("PP_ALLOWED_HOSTS"), "{message}");
    let created = request_naming(&off, "evil.example", "POST", "/work", &Credential::None).await;
    assert_eq!(
        created.status(),
        StatusCode::OK,
        "off, said outright, is off"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_key_works_at_once_a_revoked_one_stops_and_its_last_use_is_kept() {
    // The keys are read whole once an hour only: within the test's patience, only PostgreSQL's
    // announcement of the change can bring the revocation.
    let mut app = TestApp::spawn(TestSettings::new().auth(AuthSetting::All).with(|settings| {
        settings.auth.keys_refresh = std::time::Duration::from_secs(3_600);
    }))
    .await;
    let key = Credential::Bearer(app.create_key("ci", "read,write"));

    assert_eq!(
        app.post_as("/work", None, &key).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.get_as("/stats", &key).await.status(), StatusCode::OK);
    let replica = app.replica(|_| {}).await;
    assert_eq!(
        replica.get_as("/stats", &key).await.status(),
        StatusCode::OK
    );
    app.revoke_key("ci");
    let refused = eventually("the revocation reaches the API", async || {
        let response = app.get_as("/stats", &key).await;
        match response.status() {
            StatusCode::UNAUTHORIZED => Ok(response),
            other => Err(other),
        }
    })
    .await;
    eventually("the revocation reaches the replica", async || match replica
        .get_as("/stats", &key)
        .await
        .status()
    {
        StatusCode::UNAUTHORIZED => Ok(()),
        other => Err(other),
    })
    .await;
    let message = error_message(refused, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("revoked"), "{message}");

    app.stop().await.expect("stops");
    let used = app
        .db
        .count("select count(*) as n from api_keys where name = 'ci' and last_used_at is not null");
    assert_eq!(used, 1, "the last use is written when the API stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_throttled_per_address_and_valid_keys_are_not() {
    let app = TestApp::spawn(behind_a_proxy_with_one_failure_an_hour(
        TestSettings::new().auth(AuthSetting::Writes),
    ))
    .await;
    let valid = Credential::Bearer(app.create_key("ci", "write"));
    let from = |address: &str, credential: &Credential| {
        credential
            .on(app.client.post(app.url("/work")))
            .header("x-forwarded-for", address)
            .send()
    };
    let guess = || Credential::Bearer(new_api_token().expose().to_owned());
    let known = from("203.0.113.7", &valid).await.expect("POST");
    assert_eq!(known.status(), StatusCode::OK);

    for attempt in 0..5 {
        let refused = from("203.0.113.7", &guess()).await.expect("POST");
        assert_eq!(
            refused.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let throttled = from("203.0.113.7", &guess()).await.expect("POST");
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((3_000..=3_600).contains(&retry_after), "{retry_after}");

    let same_address = from("203.0.113.7", &valid).await.expect("POST");
    assert_eq!(
        same_address.status(),
        StatusCode::OK,
        "a valid key is never throttled"
    );
    let elsewhere = from("203.0.113.8", &guess()).await.expect("POST");
    assert_eq!(
        elsewhere.status(),
        StatusCode::UNAUTHORIZED,
        "another address"
    );
    // A proxy that appends ip:port: the attacker's own left-most entry, new each time, must not
    // become the client.
    for attempt in 0..5 {
        let rotated = format!("198.51.100.{attempt}, 203.0.113.7:40{attempt:03}");
        let refused = from(&rotated, &guess()).await.expect("POST");
        assert_eq!(
            refused.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{rotated}: still 203.0.113.7"
        );
    }
    let unreadable = from("198.51.100.9, not-an-address, 203.0.113.7", &guess())
        .await
        .expect("POST");
    assert_eq!(
        unreadable.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the walk from the right stops at what does not parse"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_off_wrong_admin_tokens_are_throttled_per_address_and_the_right_one_is_not() {
    let app = TestApp::spawn(behind_a_proxy_with_one_failure_an_hour(
        TestSettings::new()
            .with_queue()
            .auth(AuthSetting::Off)
            .with(|settings| {
                settings.dashboard.admin_token = Some(ADMIN_TOKEN.parse().expect("a token"));
            }),
    ))
    .await;
    let act = |address: &str, token: &str| {
        app.client
            .post(app.url("/dashboard/api/demands"))
            .header("x-forwarded-for", address)
            .header("x-pp-admin-token", token)
            .send()
    };
    let wrong = |attempt: usize| format!("not-the-admin-token-{attempt:04}");

    for attempt in 0..5 {
        let refused = act("203.0.113.7", &wrong(attempt)).await.expect("POST");
        assert_eq!(
            refused.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let throttled = act("203.0.113.7", &wrong(5)).await.expect("POST");
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    let right = act("203.0.113.7", ADMIN_TOKEN).await.expect("POST");
    assert_eq!(
        right.status(),
        StatusCode::ACCEPTED,
        "the right token is never throttled"
    );
    let elsewhere = act("203.0.113.8", &wrong(6)).await.expect("POST");
    assert_eq!(
        elsewhere.status(),
        StatusCode::UNAUTHORIZED,
        "another address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_session_is_never_throttled_by_its_neighbours_failures_an_ended_one_is() {
    let app = TestApp::spawn(behind_a_proxy_with_one_failure_an_hour(
        TestSettings::new().auth(AuthSetting::Writes),
    ))
    .await;
    app.add_account("op", Role::Operator).await;
    let session = app.session("op").await;
    let from = |address: &'static str, credential: &Credential| {
        credential
            .on(app.client.get(app.url("/dashboard/api/audit")))
            .header("x-forwarded-for", address)
            .send()
    };
    // Others behind the operator's address (a NAT, a proxy) guess keys until throttled.
    let guess = || Credential::Bearer(new_api_token().expose().to_owned());
    for _ in 0..5 {
        from("203.0.113.7", &guess()).await.expect("GET");
    }
    let throttled = from("203.0.113.7", &guess()).await.expect("GET");
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);

    let live = from("203.0.113.7", &session).await.expect("GET");
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "the operator's session goes on"
    );

    let logged_out = Credential::Session(format!("{:x}", uuid::Uuid::new_v4().as_u128()));
    let ended = from("203.0.113.7", &logged_out).await.expect("GET");
    assert_eq!(
        ended.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "a session that is not found counts as a guess"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_per_address_and_per_name_and_failures_are_audited() {
    let app = TestApp::spawn(behind_a_proxy_with_one_failure_an_hour(TestSettings::new())).await;
    app.add_account("ada", Role::Operator).await;
    let log_in = |address: String, name: &str, password: &str| {
        app.client
            .post(app.url("/dashboard/api/login"))
            .header("x-forwarded-for", address)
            .json(&serde_json::json!({"name": name, "password": password}))
            .send()
    };

    // Per name: twenty-five wrong passwords for ada (five times what one address may fail) from
    // as many addresses, then even the right one waits.
    for attempt in 0..25 {
        let wrong = log_in(format!("198.51.100.{attempt}"), "ada", "not the password")
            .await
            .expect("POST");
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    }
    let right = log_in("198.51.100.99".to_owned(), "ada", TEST_PASSWORD)
        .await
        .expect("POST");
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(right.headers().contains_key("retry-after"));

    // Per address and name: five wrong passwords for one name from one address, then that name
    // waits there; another operator behind the same address (a NAT) is not locked out, and
    // another name is counted on its own.
    app.add_account("bob", Role::Operator).await;
    for attempt in 0..5 {
        let unknown = log_in(
            "192.0.2.9".to_owned(),
            "nobody0",
            &format!("guess {attempt}"),
        )
        .await
        .expect("POST");
        assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    }
    let next = log_in("192.0.2.9".to_owned(), "nobody0", "whatever")
        .await
        .expect("POST");
    assert_eq!(next.status(), StatusCode::TOO_MANY_REQUESTS);
    let colleague = log_in("192.0.2.9".to_owned(), "bob", TEST_PASSWORD)
        .await
        .expect("POST");
    assert_eq!(
        colleague.status(),
        StatusCode::OK,
        "one client's wrong passwords do not lock out its neighbours"
    );
    let other_name = log_in("192.0.2.9".to_owned(), "nobody1", "whatever")
        .await
        .expect("POST");
    assert_eq!(other_name.status(), StatusCode::UNAUTHORIZED);

    let failed = app.db.count(
        "select count(*) as n from audit_events where action = 'login' and outcome = 'refused' \
         and actor in ('login:ada', 'login:nobody0') and source in ('198.51.100.0', '192.0.2.9')",
    );
    assert_eq!(
        failed,
        1 + 5,
        "who was tried, from where: ada once from 198.51.100.0, nobody0 five times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_renewed_at_login_ends_at_logout_and_with_its_account_and_outlives_the_api() {
    let app = TestApp::spawn(TestSettings::new().auth(AuthSetting::All)).await;
    app.add_account("ada", Role::Viewer).await;

    let first = app.session("ada").await;
    let login = app.log_in("ada", TEST_PASSWORD, &first).await;
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let second = session_cookie(&login).expect("a new session");
    assert_ne!(first, second, "a login makes a new session");
    let who = app.get_as("/dashboard/api/session", &second).await;
    assert_eq!(who.status(), StatusCode::OK);
    let who: Value = who.json().await.expect("JSON");
    assert_eq!(who["actor"], "account:ada");
    assert_eq!(who["role"], "viewer");
    assert_eq!(who["can_act"], false);
    let ended = app.get_as("/dashboard/api/session", &first).await;
    assert_eq!(
        ended.status(),
        StatusCode::UNAUTHORIZED,
        "the old session ended"
    );

    // Another replica (or the API restarted) knows the session: it is in PostgreSQL.
    let replica = app.replica(|_| {}).await;
    assert_eq!(
        replica.get_as("/stats", &second).await.status(),
        StatusCode::OK
    );

    let logout = app.post_as("/dashboard/api/logout", None, &second).await;
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    assert!(
        logout.headers()["set-cookie"]
            .to_str()
            .expect("text")
            .contains("Max-Age=0")
    );
    for server in [&app, &replica] {
        let after = server.get_as("/stats", &second).await;
        assert_eq!(
            after.status(),
            StatusCode::UNAUTHORIZED,
            "logged out everywhere"
        );
    }

    let third = app.session("ada").await;
    assert_eq!(app.get_as("/stats", &third).await.status(), StatusCode::OK);
    let mut conn = app.db.connect();
    assert!(pp_lib::db::identities::remove_account(&mut conn, "ada").expect("removed"));
    let removed = app.get_as("/stats", &third).await;
    let message = error_message(removed, StatusCode::UNAUTHORIZED).await;
    assert!(message.contains("session ended"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_from_another_site_is_refused_even_with_a_valid_session() {
    let app = TestApp::spawn(TestSettings::new().with_queue().auth(AuthSetting::Writes)).await;
    app.add_account("op", Role::Operator).await;
    let session = app.session("op").await;
    let enqueue = |site: Option<(&'static str, &'static str)>| {
        let mut request = session.on(app.client.post(app.url("/dashboard/api/demands")));
        if let Some(header) = site {
            request = request.header(header.0, header.1);
        }
        request.send()
    };

    for site in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "https://evil.example"),
        ("origin", "null"),
    ] {
        let refused = enqueue(Some(site)).await.expect("POST");
        let message = error_message(refused, StatusCode::FORBIDDEN).await;
        assert!(
            message.contains("may not change anything"),
            "{site:?}: {message}"
        );
    }
    let same = enqueue(Some(("sec-fetch-site", "same-origin")))
        .await
        .expect("POST");
    assert_eq!(same.status(), StatusCode::ACCEPTED);
    let origin = format!("http://{}", app.host_and_port());
    let same_origin = session
        .on(app.client.post(app.url("/dashboard/api/demands")))
        .header("origin", origin)
        .send()
        .await
        .expect("POST");
    assert_eq!(same_origin.status(), StatusCode::ACCEPTED);
    let cross_login = app
        .client
        .post(app.url("/dashboard/api/login"))
        .header("sec-fetch-site", "cross-site")
        .json(&serde_json::json!({"name": "op", "password": TEST_PASSWORD}))
        .send()
        .await
        .expect("POST");
    assert_eq!(
        cross_login.status(),
        StatusCode::FORBIDDEN,
        "no login from elsewhere"
    );
    assert_eq!(
        app.db.count("select count(*) as n from demand_outbox"),
        2,
        "only the same-origin demands"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_is_refused_actions_an_operator_is_not_and_the_trail_says_who_did_what() {
    let app = TestApp::spawn(TestSettings::new().with_queue().auth(AuthSetting::Writes)).await;
    app.add_account("vic", Role::Viewer).await;
    app.add_account("ops", Role::Operator).await;
    let viewer = app.session("vic").await;
    let operator = app.session("ops").await;
    let body = Some(r#"{"count": 3, "add_up_to": 4}"#);

    let refused = app.post_as("/dashboard/api/demands", body, &viewer).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let again = app.post_as("/dashboard/api/demands", body, &viewer).await;
    assert_eq!(
        again.status(),
        StatusCode::FORBIDDEN,
        "refused again, recorded once"
    );
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .expect("text")
            .contains("scope=\"operate\"")
    );
    let done = app.post_as("/dashboard/api/demands", body, &operator).await;
    assert_eq!(done.status(), StatusCode::ACCEPTED);
    assert_eq!(app.db.count("select count(*) as n from demand_outbox"), 3);
    let forbidden = app.get_as("/dashboard/api/audit", &viewer).await;
    assert_eq!(forbidden.status(), StatusCode::FORBIDDEN);

    let trail: Value = app
        .get_as("/dashboard/api/audit?limit=10", &operator)
        .await
        .json()
        .await
        .expect("JSON");
    let lines: Vec<(String, String, String, String)> = trail["events"]
        .as_array()
        .unwrap_or_else(|| panic!("events in {trail}"))
        .iter()
        .map(|event| {
            let field = |name: &str| event[name].as_str().expect("text").to_owned();
            (
                field("actor"),
                field("action"),
                field("object"),
                field("outcome"),
            )
        })
        .collect();
    let expected = [
        (
            "account:vic",
            "refused",
            "GET /dashboard/api/audit",
            "refused",
        ),
        ("account:ops", "demands.enqueue", "3 adding up to 4", "done"),
        (
            "account:vic",
            "refused",
            "POST /dashboard/api/demands",
            "refused",
        ),
        ("account:ops", "login", "", "done"),
        ("account:vic", "login", "", "done"),
    ];
    let expected: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(a, b, c, d)| ((*a).into(), (*b).into(), (*c).into(), (*d).into()))
        .collect();
    assert_eq!(lines, expected, "newest first");
    assert_eq!(trail["events"][0]["source"], "127.0.0.1", "from where");
    let bad = app.get_as("/dashboard/api/audit?limit=0", &operator).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_recorded_once_per_route_and_cost_the_identity_its_rate_limit() {
    let app = TestApp::spawn(
        TestSettings::new()
            .with_queue()
            .redis()
            .auth(AuthSetting::Writes)
            .with(|settings| {
                settings.rate_limit.rate = Some("1/h".parse().expect("a rate"));
                settings.rate_limit.burst = Some(10);
            }),
    )
    .await;
    let reader = Credential::Bearer(app.create_key("reader", "read,write"));

    let mut statuses = Vec::new();
    for key in 0..15 {
        let path = format!("/dashboard/api/dead-letters/k{key}/retry");
        statuses.push(app.post_as(&path, None, &reader).await.status());
    }

    assert_eq!(
        statuses[..10],
        [StatusCode::FORBIDDEN; 10],
        "refused for want of the operate scope"
    );
    assert_eq!(
        statuses[10..],
        [StatusCode::TOO_MANY_REQUESTS; 5],
        "refusals spend the identity's quota like any request"
    );
    let recorded = app.db.count(
        "select count(*) as n from audit_events where actor = 'key:reader' and outcome = 'refused'",
    );
    assert_eq!(recorded, 1, "one line for the route, not one per key asked");
    let object = app.db.count(
        "select count(*) as n from audit_events where actor = 'key:reader' \
         and object = 'POST /dashboard/api/dead-letters/{key}/retry'",
    );
    assert_eq!(object, 1, "the route's pattern is what the line names");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_form_leads_to_the_dashboard_or_says_why_not() {
    let app = TestApp::spawn(TestSettings::new().auth(AuthSetting::All)).await;
    app.add_account("ada", Role::Operator).await;
    let form = |password: &'static str| {
        app.client
            .post(app.url("/dashboard/api/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .body(format!("name=ada&password={}", password.replace(' ', "+")))
            .send()
    };

    let page = app.get("/login").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["cache-control"], "no-store");
    assert!(page.text().await.expect("HTML").contains("<form"));
    let wrong = form("not the password at all").await.expect("POST");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(
        wrong
            .text()
            .await
            .expect("HTML")
            .contains("wrong name or password")
    );
    let right = form(TEST_PASSWORD).await.expect("POST");
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()["location"], "/");
    let session = session_cookie(&right).expect("a session");
    assert_eq!(
        app.get_as("/dashboard/api/overview", &session)
            .await
            .status(),
        StatusCode::OK
    );
    let anonymous = app.get("/dashboard/api/overview").await;
    assert_eq!(
        anonymous.status(),
        StatusCode::UNAUTHORIZED,
        "all: reading needs a login"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let app = TestApp::spawn(TestSettings::new()).await;
    for path in [
        "/",
        "/login",
        "/work/1",
        "/stats",
        "/nowhere",
        "/dashboard/api/session",
    ] {
        let response = app.get(path).await;
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        if path.starts_with("/dashboard/api/") || path == "/login" {
            assert_eq!(headers["cache-control"], "no-store", "{path}");
        }
    }
    let page = app.get("/").await;
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .expect("text");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_credentials_are_refused_in_one_clean_answer_or_ignored_when_off() {
    let all = TestApp::spawn(TestSettings::new().auth(AuthSetting::All).with(|settings| {
        settings.auth.failures = "100000/s".parse().expect("a rate");
    }))
    .await;
    let off = TestApp::spawn(TestSettings::new()).await;
    let long = "x".repeat(4_000);
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("authorization", b"Bearer".to_vec()),
        ("authorization", b"Bearer ".to_vec()),
        ("authorization", b"Bearer \xff\xfe\x80".to_vec()),
        ("authorization", format!("Bearer {long}").into_bytes()),
        ("authorization", b"Bearer ppk_' or 1=1 --".to_vec()),
        (
            "authorization",
            b"Bearer ppk_0000000000000000000000000000000000".to_vec(),
        ),
        ("x-api-key", b"\x00\x01".to_vec()),
        ("x-api-key", long.clone().into_bytes()),
        ("x-pp-admin-token", b"".to_vec()),
        ("x-pp-admin-token", long.clone().into_bytes()),
        ("cookie", format!("pp_session={long}").into_bytes()),
        ("cookie", b"pp_session=".to_vec()),
        ("cookie", b"pp_session=\"; other=1".to_vec()),
        ("cookie", b"pp_session=a; pp_session=b".to_vec()),
        ("cookie", b"=;;;==;pp_session".to_vec()),
    ];
    for (name, value) in &hostile {
        let header = reqwest::header::HeaderValue::from_bytes(value);
        let Ok(header) = header else {
            continue; // reqwest will not send it; nothing of ours to see
        };
        for (app, mode) in [(&all, "all"), (&off, "off")] {
            let response = app
                .client
                .get(app.url("/stats"))
                .header(*name, header.clone())
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match mode {
                "all" => assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{name}: {value:?}: {body}"
                ),
                _ => assert_eq!(
                    status,
                    StatusCode::OK,
                    "off ignores {name}: {value:?}: {body}"
                ),
            }
        }
    }
    let key = Credential::Bearer(all.create_key("after", "read"));
    assert_eq!(
        all.get_as("/stats", &key).await.status(),
        StatusCode::OK,
        "still serving"
    );
}
