//! The dashboard's login: the page (`GET /login`), logging in and out
//! (`POST /dashboard/api/login`, `POST /dashboard/api/logout`) and who is logged in
//! (`GET /dashboard/api/session`).
//!
//! A login checks the password against its Argon2id hash on the blocking pool (never on an async
//! worker); an unknown name is checked against a hash of the same cost, so the answer's time
//! tells nothing about which names exist. Failures count per client address and per name tried
//! (`PP_AUTH_FAILURES`); past either, logins are answered 429 until the rate allows one again,
//! whatever the password. A login makes a new session (a random token in the `pp_session`
//! cookie, its SHA-256 in PostgreSQL) and ends the one the browser had: a session is never
//! carried over a login. Logging out deletes it in PostgreSQL, so it ends on every replica at
//! once. Every login, failed login and logout goes to the audit trail.
//!
//! The form posts `application/x-www-form-urlencoded` and is answered with a redirect to the
//! dashboard (or the page again, saying why not); a JSON body is answered in JSON.

use std::time::Instant;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use chrono::Utc;
use pp_lib::auth::{
    check_name, dummy_password_hash, new_session_token, token_hash, verify_password,
};
use pp_lib::db::audit_trail::Outcome;
use pp_lib::db::identities;
use serde::{Deserialize, Serialize};

use super::Dashboard;
use crate::auth::admin::ActionAccess;
use crate::auth::credentials::SESSION_COOKIE;
use crate::auth::guard::{Auth, identity_of, throttle_key};
use crate::auth::{AuditLine, Identity, Mode, audit};
use crate::error::{ApiError, ErrorBody, ErrorResponse};
use crate::metrics::AuthRefusal;
use crate::state::AppState;

pub const LOGIN_PAGE: &str = "/login";
pub const LOGIN_PATH: &str = "/dashboard/api/login";
pub const LOGOUT_PATH: &str = "/dashboard/api/logout";
pub const SESSION_PATH: &str = "/dashboard/api/session";

const PAGE: &str = include_str!("../../assets/dashboard/login.html");

/// Longest a login waits for its turn at the password checks; past it, 503 with `Retry-After`.
const PASSWORD_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const MESSAGE_SLOT: &str = "<!--message-->";

/// A login: an account's name and password.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Login {
    #[schema(example = "ada")]
    pub name: String,
    #[schema(example = "correct horse battery staple")]
    pub password: String,
}

/// Who is logged in, for the page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionInfo {
    /// How the API holds this request: `off`, `writes` or `all`.
    pub mode: Mode,
    /// What the dashboard's actions need, from where it asks.
    pub actions: ActionAccess,
    /// Who the request is: `anonymous`, `account:NAME`, `key:NAME` or `admin-token`.
    #[schema(example = "account:ada")]
    pub actor: String,
    /// An account's role: `viewer` or `operator`; absent for anything else.
    #[schema(example = "operator")]
    pub role: Option<String>,
    /// What it may do: `read`, `write`, `operate`.
    pub scopes: Vec<String>,
    /// Whether the dashboard's actions are allowed to it, from where it asks.
    pub can_act: bool,
}

/// `GET /login`: the login page.
pub async fn login_page() -> HttpResponse {
    page(StatusCode::OK, None)
}

fn page(status: StatusCode, problem: Option<&str>) -> HttpResponse {
    let message = problem.map_or_else(String::new, |text| {
        format!(
            r#"<p class="problem" role="alert">{}</p>"#,
            escape_html(text)
        )
    });
    HttpResponse::build(status)
        .insert_header(ContentType::html())
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            crate::dashboard::assets::CONTENT_SECURITY_POLICY,
        ))
        .body(PAGE.replacen(MESSAGE_SLOT, &message, 1))
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Logs in.
///
/// The form's fields (`application/x-www-form-urlencoded`) or the same as JSON. A login ends the
/// session the request carried and starts a new one, in the `pp_session` cookie (HttpOnly,
/// SameSite=Strict, Secure over TLS).
#[utoipa::path(
    post,
    path = "/dashboard/api/login",
    tag = "dashboard",
    request_body(content(
        (Login = "application/json"),
        (Login = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, description = "Logged in (a JSON login); the session is in the pp_session cookie", body = SessionInfo,
         headers(("Set-Cookie" = String, description = "pp_session=…; HttpOnly; SameSite=Strict; Path=/"))),
        (status = 303, description = "Logged in from the form: on to the dashboard",
         headers(("Location" = String, description = "/"), ("Set-Cookie" = String, description = "pp_session=…; HttpOnly; SameSite=Strict; Path=/"))),
        (status = 400, description = "Malformed body (to the form: the login page, saying why)",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 401, description = "Wrong name or password (to the form: the login page, saying so)",
         content((ErrorBody = "application/json"), (String = "text/html"))),
        (status = 403, description = "Posted from another site", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many failed logins from this address or for this name",
         content((ErrorBody = "application/json"), (String = "text/html")),
         headers(("Retry-After" = u32, description = "Seconds until a login is tried again"))),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn log_in(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
    dashboard: web::Data<Dashboard>,
) -> HttpResponse {
    let form = !is_json(&request);
    let login = match parse_login(&body, form) {
        Ok(login) => login,
        Err(reason) => return answer(form, StatusCode::BAD_REQUEST, &reason),
    };
    match attempt(&request, &state, &auth, login).await {
        Ok(account) => {
            let token = new_session_token();
            let hash = token.hash();
            let expires = Utc::now()
                + chrono::Duration::from_std(auth.session_ttl)
                    .unwrap_or(chrono::Duration::hours(8));
            let ended = request
                .cookie(SESSION_COOKIE)
                .map(|c| token_hash(c.value()));
            let account_id = account.id;
            let line = AuditLine {
                actor: format!("account:{}", account.name),
                action: "login",
                object: String::new(),
                source: auth.client(&request),
                outcome: Outcome::Done,
            };
            let opened = state
                .run_db(move |conn| {
                    use diesel::Connection;
                    conn.transaction(|conn| {
                        if let Some(ended) = ended {
                            identities::delete_session(conn, &ended)?;
                        }
                        identities::create_session(conn, &hash, account_id, expires)?;
                        line.record(conn)
                    })
                    .map_err(pp_lib::Error::from)
                })
                .await;
            if let Err(error) = opened {
                return error.error_response();
            }
            let identity = Identity::Account {
                id: account.id,
                role: account.role(),
                name: account.name,
            };
            let cookie =
                session_cookie(&auth, &request, token.expose().to_owned(), auth.session_ttl);
            let mut response = if form {
                HttpResponse::SeeOther()
                    .insert_header((header::LOCATION, "/"))
                    .finish()
            } else {
                HttpResponse::Ok().json(session_info(&request, &auth, &dashboard, &identity))
            };
            if let Err(error) = response.add_cookie(&cookie) {
                log::error!("the session cookie cannot be set: {error}");
            }
            no_store(response)
        }
        Err(Failure::Wrong) => {
            state.metrics.refused(AuthRefusal::LoginFailed);
            answer(form, StatusCode::UNAUTHORIZED, "wrong name or password")
        }
        Err(Failure::Throttled(seconds)) => {
            state.metrics.refused(AuthRefusal::LoginThrottled);
            let mut response = answer(
                form,
                StatusCode::TOO_MANY_REQUESTS,
                &format!("too many failed logins; try again in {seconds} s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        Err(Failure::Unavailable(error)) => error.error_response(),
    }
}

enum Failure {
    Wrong,
    Throttled(u64),
    Unavailable(ApiError),
}

/// Checks `login`'s password, counting a failure against the name from this address, and
/// against the name (from anywhere, [`super::guard::NAME_FAILURES_FACTOR`] times as many). Never
/// against the address alone: one client's wrong passwords behind a shared address (a NAT, a
/// proxy) must not lock every operator behind it out; what one address may try is bounded for
/// each name it tries, and each name is bounded whoever tries it.
async fn attempt(
    request: &HttpRequest,
    state: &AppState,
    auth: &Auth,
    login: Login,
) -> Result<identities::Account, Failure> {
    let name = login.name.trim().to_owned();
    // Only a name an account can have is counted by name; any other is counted as one.
    let name_key = check_name(&name)
        .ok()
        .map(|name| format!("name:{}", name.to_lowercase()));
    let client = format!(
        "{}|{}",
        throttle_key(&auth.client(request)),
        name_key.as_deref().unwrap_or("(not a name)")
    );
    // A few checks at once, whoever asks: the others wait their turn, for a while.
    let _check = tokio::time::timeout(PASSWORD_QUEUE_WAIT, auth.password_checks.acquire())
        .await
        .map_err(|_| Failure::Unavailable(ApiError::Busy))?
        .map_err(|_| Failure::Unavailable(ApiError::Busy))?;
    // Asked once the turn has come, so logins sent together see each other's failures.
    let now = Instant::now();
    let wait = [
        auth.login_failures.wait(&client, now),
        name_key
            .as_ref()
            .and_then(|key| auth.name_failures.wait(key, now)),
    ]
    .into_iter()
    .flatten()
    .max();
    if let Some(wait) = wait {
        return Err(Failure::Throttled(
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1),
        ));
    }
    let found = match &name_key {
        Some(_) => {
            let lookup = name.clone();
            state
                .run_db(move |conn| Ok(identities::find_account_for_login(conn, &lookup)?))
                .await
                .map_err(Failure::Unavailable)?
        }
        None => None,
    };
    let (account, hash) = match found {
        Some((account, hash)) => (Some(account), Some(hash)),
        None => (None, None),
    };
    let password = login.password;
    let verified = web::block(move || {
        // The hash checked for a name without an account is made at the first login, whatever
        // its name, not at start: a process that never sees a login never holds Argon2's
        // working memory for it, and the first login of a known name pays the same as of an
        // unknown one.
        let dummy = dummy_password_hash();
        verify_password(hash.as_deref().unwrap_or(dummy), &password)
    })
    .await
    .map_err(|error| Failure::Unavailable(ApiError::from(error)))?;
    match account {
        Some(account) if verified => Ok(account),
        _ => {
            let now = Instant::now();
            auth.login_failures.failed(&client, now);
            if let Some(key) = &name_key {
                auth.name_failures.failed(key, now);
            }
            let line = AuditLine {
                actor: match &name_key {
                    Some(_) => format!("login:{name}"),
                    None => "login:(not a name)".to_owned(),
                },
                action: "login",
                object: String::new(),
                source: auth.client(request),
                outcome: Outcome::Refused,
            };
            audit(state, line).await;
            Err(Failure::Wrong)
        }
    }
}

/// Logs out: the session ends everywhere, and its cookie is cleared.
#[utoipa::path(
    post,
    path = "/dashboard/api/logout",
    tag = "dashboard",
    responses(
        (status = 303, description = "Logged out (or was not logged in): on to the login page",
         headers(("Set-Cookie" = String, description = "pp_session cleared"))),
        (status = 403, description = "Posted from another site", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn log_out(
    request: HttpRequest,
    state: web::Data<AppState>,
    auth: web::Data<Auth>,
) -> HttpResponse {
    if let Some(cookie) = request.cookie(SESSION_COOKIE) {
        let hash = token_hash(cookie.value());
        let source = auth.client(&request);
        let ended = state
            .run_db(move |conn| {
                use diesel::Connection;
                conn.transaction(|conn| {
                    let Some(account) = identities::find_session(conn, &hash)? else {
                        return Ok(());
                    };
                    identities::delete_session(conn, &hash)?;
                    AuditLine {
                        actor: format!("account:{}", account.name),
                        action: "logout",
                        object: String::new(),
                        source,
                        outcome: Outcome::Done,
                    }
                    .record(conn)
                })
                .map_err(pp_lib::Error::from)
            })
            .await;
        if let Err(error) = ended {
            // The session may live on in PostgreSQL; this browser forgets it all the same.
            return clear_session(&auth, &request, error.error_response());
        }
    }
    let response = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, LOGIN_PAGE))
        .finish();
    clear_session(&auth, &request, response)
}

/// `response`, clearing the session cookie, never cached.
fn clear_session(auth: &Auth, request: &HttpRequest, mut response: HttpResponse) -> HttpResponse {
    let mut cleared = session_cookie(auth, request, String::new(), std::time::Duration::ZERO);
    cleared.make_removal();
    if let Err(error) = response.add_cookie(&cleared) {
        log::error!("the session cookie cannot be cleared: {error}");
    }
    no_store(response)
}

/// Who the request is, and what the dashboard may offer it.
#[utoipa::path(
    get,
    path = "/dashboard/api/session",
    tag = "dashboard",
    responses(
        (status = 200, description = "Who is asking", body = SessionInfo),
        (status = 401, description = "PP_AUTH=all and no identity", body = ErrorBody),
        (status = 429, response = crate::rate_limit::TooManyRequests),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn read_session(
    request: HttpRequest,
    auth: web::Data<Auth>,
    dashboard: web::Data<Dashboard>,
) -> HttpResponse {
    let identity = identity_of(&request);
    no_store(HttpResponse::Ok().json(session_info(&request, &auth, &dashboard, &identity)))
}

fn session_info(
    request: &HttpRequest,
    auth: &Auth,
    dashboard: &Dashboard,
    identity: &Identity,
) -> SessionInfo {
    let mode = auth.mode_for(request);
    SessionInfo {
        mode,
        actions: match mode {
            Mode::Off => dashboard.policy.access(),
            Mode::Writes | Mode::All => ActionAccess::Scope,
        },
        can_act: auth.may_act(&dashboard.policy, request, identity).is_ok(),
        actor: identity.actor(),
        role: match identity {
            Identity::Account { role, .. } => Some(role.as_str().to_owned()),
            _ => None,
        },
        scopes: identity.scopes().names(),
    }
}

/// The session cookie, `Secure` where the client came over HTTPS (as a trusted proxy says).
fn session_cookie(
    auth: &Auth,
    request: &HttpRequest,
    value: String,
    ttl: std::time::Duration,
) -> Cookie<'static> {
    let secure = auth.origins.came_over_https(request);
    Cookie::build(SESSION_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(secure)
        .max_age(actix_web::cookie::time::Duration::seconds(
            i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
        ))
        .finish()
}

fn no_store(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn is_json(request: &HttpRequest) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

fn parse_login(body: &[u8], form: bool) -> Result<Login, String> {
    if form {
        form_login(body)
    } else {
        serde_json::from_slice(body)
            .map_err(|error| format!("the body must be {{\"name\": …, \"password\": …}}: {error}"))
    }
}

/// The form's two fields: the same encoding as a query string, read as one.
fn form_login(body: &[u8]) -> Result<Login, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the form is not UTF-8".to_owned())?;
    web::Query::<Login>::from_query(text)
        .map(web::Query::into_inner)
        .map_err(|_| "the form needs a name and a password".to_owned())
}

/// The answer to a failed login: the page again, saying why, or JSON.
fn answer(form: bool, status: StatusCode, message: &str) -> HttpResponse {
    if form {
        page(status, Some(message))
    } else {
        no_store(ErrorBody::response(status, message))
    }
}
