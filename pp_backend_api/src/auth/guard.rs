//! The middleware on every resource (outside its rate limit): refuses a cross-site change, finds
//! out who is asking, and lets the request through when its route's [`Access`] allows them.
//!
//! In order:
//!
//! 1. a request that changes something (not GET, HEAD, OPTIONS) from another site is refused
//!    403 ([`csrf`]), in every mode: a page elsewhere cannot make a browser act here, whatever
//!    cookie or loopback address it carries;
//! 2. an open route (health, readiness, metrics, the login) is served as it is;
//! 3. the credentials the request presents ([`credentials`]) name an [`Identity`]: an API key
//!    found in the [`KeyDirectory`] (or in PostgreSQL, for a key made since the directory was
//!    read), the account of a live session, the admin token; a key or token the directory does
//!    not know costs a failure against the client's address, and past `PP_AUTH_FAILURES` the
//!    client's next credential the directory does not know is answered 429 without a look in
//!    the database (a key the directory knows is never throttled; one made in the last
//!    seconds, asked from a throttled address, waits for the next reading of the keys);
//! 4. the identity is checked against the scope the route needs in this mode ([`authorize`]):
//!    401 with `WWW-Authenticate: Bearer` when it presented nothing or nothing valid, 403 with
//!    `error="insufficient_scope"` when it may not; else the request goes on, the identity in its
//!    extensions for the rate limit, the handlers and the audit trail.
//!
//! With `PP_AUTH=off`, credentials that authenticate no one are ignored (the request is
//! anonymous), as they were before there were keys: nothing needs them. An ended session's
//! cookie is ignored likewise where the route needs no identity, so a reader whose login expired
//! keeps reading.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use chrono::Utc;
use pp_lib::auth::{is_api_token, token_hash};
use pp_lib::db::audit_trail::Outcome;
use pp_lib::db::identities;

use super::credentials::{Presented, SESSION_COOKIE, presented};
use super::directory::KeyDirectory;
use super::throttle::Throttle;
use super::{Access, AuditLine, AuthConfig, Denial, Identity, Mode, audit, authorize, csrf};
use crate::dashboard::admin::AdminToken;
use crate::error::{ApiError, ErrorBody, ErrorResponse};
use crate::metrics::AuthRefusal;
use crate::rate_limit::client_ip;
use crate::state::AppState;

/// What the guard and the login share: the mode, the keys, the failures counted.
#[derive(Debug)]
pub struct Auth {
    pub mode: Mode,
    pub directory: Arc<KeyDirectory>,
    /// Unknown keys and tokens, per client address.
    pub key_failures: Throttle,
    /// Failed logins, per client address.
    pub login_failures: Throttle,
    /// Failed logins, per account name tried.
    pub name_failures: Throttle,
    pub admin_token: Option<AdminToken>,
    pub session_ttl: Duration,
    pub trusted_proxies: Vec<IpAddr>,
}

impl Auth {
    pub fn new(
        mode: Mode,
        config: &AuthConfig,
        admin_token: Option<AdminToken>,
        trusted_proxies: Vec<IpAddr>,
    ) -> Self {
        Auth {
            mode,
            directory: Arc::new(KeyDirectory::default()),
            key_failures: Throttle::new(config.failures),
            login_failures: Throttle::new(config.failures),
            name_failures: Throttle::new(config.failures),
            admin_token,
            session_ttl: config.session_ttl,
            trusted_proxies,
        }
    }

    /// `Err(429)` while `client` has failed too often (never with `PP_AUTH=off`, where
    /// credentials are ignored rather than refused).
    fn check_failures(&self, client: &str) -> Result<(), Refused> {
        if self.mode == Mode::Off {
            return Ok(());
        }
        match self.key_failures.wait(client, Instant::now()) {
            Some(wait) => Err(Refused::Throttled(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication of `client`.
    fn failed(&self, client: &str) {
        if self.mode != Mode::Off {
            self.key_failures.failed(client, Instant::now());
        }
    }

    /// The client's address (a trusted proxy's forwarded client when there is one), as the
    /// failures are counted and the audit trail says where from.
    pub fn client(&self, request: &HttpRequest) -> String {
        client_ip(
            request.headers(),
            request.peer_addr().map(|peer| peer.ip()),
            &self.trusted_proxies,
        )
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

/// The identity the guard found for `request`; anonymous where no guard ran.
pub fn identity_of(request: &HttpRequest) -> Identity {
    request
        .extensions()
        .get::<Identity>()
        .cloned()
        .unwrap_or(Identity::Anonymous)
}

/// The middleware, on each resource (which knows its [`Access`]).
pub async fn guard(
    access: Access,
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse, Error> {
    let Some(auth) = request.app_data::<web::Data<Auth>>().cloned() else {
        return next.call(request).await;
    };
    let metrics = request
        .app_data::<web::Data<AppState>>()
        .map(|state| state.metrics.clone());
    let refuse = |request: ServiceRequest, refused: Refused| {
        if let (Some(metrics), Some(reason)) = (&metrics, refused.counted()) {
            metrics.refused(reason);
        }
        Ok(request.into_response(refusal(&refused)))
    };
    if !csrf::is_safe(request.method()) {
        let host = request.connection_info().host().to_owned();
        if let Err(reason) = csrf::same_origin(request.method(), request.headers(), &host) {
            return refuse(request, Refused::CrossSite(reason));
        }
    }
    if access == Access::Open {
        return next.call(request).await;
    }
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(request).await;
    };
    let identity = match identify(&auth, &state, request.request()).await {
        Ok(identity) => identity,
        Err(refused) => return refuse(request, refused),
    };
    let needed = access.needs(auth.mode);
    let identity = match identity {
        Found::Who(identity) => identity,
        Found::Nobody(_) if auth.mode == Mode::Off => Identity::Anonymous,
        Found::Nobody(Ended::Session) if needed.is_none() => Identity::Anonymous,
        Found::Nobody(ended) => {
            let refused = Refused::Denied(Denial::Invalid(ended.reason().to_owned()));
            return refuse(request, refused);
        }
    };
    if let Err(denial) = authorize(needed, &identity) {
        if access == Access::Operate && identity != Identity::Anonymous {
            audit_refusal(&state, &auth, request.request(), &identity).await;
        }
        return refuse(request, Refused::Denied(denial));
    }
    request.extensions_mut().insert(identity);
    next.call(request).await
}

/// What the credentials name.
enum Found {
    Who(Identity),
    /// Credentials that authenticate no one, and why.
    Nobody(Ended),
}

/// Why credentials authenticate no one.
enum Ended {
    Unreadable(&'static str),
    NotAKey,
    Unknown,
    Revoked,
    Expired,
    WrongAdminToken,
    /// The session cookie's session ended (logged out, expired, account removed).
    Session,
}

impl Ended {
    fn reason(&self) -> &'static str {
        match self {
            Ended::Unreadable(reason) => reason,
            Ended::NotAKey => "the token is not a pp API key",
            Ended::Unknown => "no API key has this token",
            Ended::Revoked => "the API key was revoked",
            Ended::Expired => "the API key expired",
            Ended::WrongAdminToken => "the admin token is wrong",
            Ended::Session => "the session ended: log in again",
        }
    }
}

/// Why the guard answered instead of the route.
enum Refused {
    Denied(Denial),
    CrossSite(String),
    /// Too many failed authentications from this address: 429 for this long.
    Throttled(Duration),
    Unavailable(ApiError),
}

impl Refused {
    /// How the metrics count it; `None` when it is no refusal of who asked (the database did
    /// not answer: a 503, counted with the requests).
    fn counted(&self) -> Option<AuthRefusal> {
        Some(match self {
            Refused::Denied(Denial::Missing(_)) => AuthRefusal::Missing,
            Refused::Denied(Denial::Invalid(_)) => AuthRefusal::Invalid,
            Refused::Denied(Denial::InsufficientScope(_)) => AuthRefusal::InsufficientScope,
            Refused::CrossSite(_) => AuthRefusal::CrossSite,
            Refused::Throttled(_) => AuthRefusal::Throttled,
            Refused::Unavailable(_) => return None,
        })
    }
}

/// Who the credentials `request` presents name.
async fn identify(auth: &Auth, state: &AppState, request: &HttpRequest) -> Result<Found, Refused> {
    let cookie = request.cookie(SESSION_COOKIE);
    match presented(request.headers(), cookie.as_ref().map(|c| c.value())) {
        Presented::Nothing => Ok(Found::Who(Identity::Anonymous)),
        Presented::Unreadable(reason) => Ok(Found::Nobody(Ended::Unreadable(reason))),
        Presented::ApiKey(token) => api_key(auth, state, request, &token).await,
        Presented::AdminToken(given) => {
            let client = auth.client(request);
            auth.check_failures(&client)?;
            match &auth.admin_token {
                Some(token) if token.matches(&given) => Ok(Found::Who(Identity::AdminToken)),
                _ => {
                    auth.failed(&client);
                    Ok(Found::Nobody(Ended::WrongAdminToken))
                }
            }
        }
        Presented::Session(token) => {
            let hash = token_hash(&token);
            let account = state
                .run_db(move |conn| Ok(identities::find_session(conn, &hash)?))
                .await
                .map_err(Refused::Unavailable)?;
            Ok(match account {
                Some(account) => Found::Who(Identity::Account {
                    id: account.id,
                    role: account.role(),
                    name: account.name,
                }),
                None => Found::Nobody(Ended::Session),
            })
        }
    }
}

/// The key `token` is, from the directory, or PostgreSQL when the directory does not know it.
async fn api_key(
    auth: &Auth,
    state: &AppState,
    request: &HttpRequest,
    token: &str,
) -> Result<Found, Refused> {
    let client = auth.client(request);
    if !is_api_token(token) {
        // Malformed or mistyped (the checksum says so): no lookup, but a failure all the same.
        auth.check_failures(&client)?;
        auth.failed(&client);
        return Ok(Found::Nobody(Ended::NotAKey));
    }
    let hash = token_hash(token);
    let key = match auth.directory.find(&hash) {
        Some(key) => key,
        None => {
            auth.check_failures(&client)?;
            let found = state
                .run_db(move |conn| Ok(identities::find_key_by_hash(conn, &hash)?))
                .await
                .map_err(Refused::Unavailable)?;
            match found {
                Some(key) => {
                    auth.directory.insert(hash, key.clone());
                    key
                }
                None => {
                    auth.failed(&client);
                    return Ok(Found::Nobody(Ended::Unknown));
                }
            }
        }
    };
    let now = Utc::now();
    if key.revoked_on.is_some() {
        return Ok(Found::Nobody(Ended::Revoked));
    }
    if key.expires_on.is_some_and(|expires| expires <= now) {
        return Ok(Found::Nobody(Ended::Expired));
    }
    auth.directory.used(key.id);
    Ok(Found::Who(Identity::Key {
        id: key.id,
        scopes: key.scopes(),
        name: key.name,
    }))
}

/// Records that `identity` tried an action it may not do.
async fn audit_refusal(state: &AppState, auth: &Auth, request: &HttpRequest, identity: &Identity) {
    let line = AuditLine {
        actor: identity.actor(),
        action: "refused",
        object: format!("{} {}", request.method(), request.path()),
        source: auth.client(request),
        outcome: Outcome::Refused,
    };
    audit(state, line).await;
}

/// The realm every challenge names.
const REALM: &str = "pp";

fn refusal(refused: &Refused) -> HttpResponse {
    let (status, message, challenge) = match refused {
        Refused::Denied(Denial::Missing(scope)) => (
            StatusCode::UNAUTHORIZED,
            format!(
                "this needs an identity with the {scope} scope: an API key \
                 (Authorization: Bearer <token>) or a dashboard login"
            ),
            Some(format!("Bearer realm=\"{REALM}\"")),
        ),
        Refused::Denied(Denial::Invalid(reason)) => (
            StatusCode::UNAUTHORIZED,
            reason.clone(),
            Some(format!(
                "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{reason}\""
            )),
        ),
        Refused::Denied(Denial::InsufficientScope(scope)) => (
            StatusCode::FORBIDDEN,
            format!("this needs the {scope} scope, which this identity does not have"),
            Some(format!(
                "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
        ),
        Refused::CrossSite(reason) => (StatusCode::FORBIDDEN, reason.clone(), None),
        Refused::Throttled(wait) => {
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = ErrorBody::response(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed authentications from this address; retry in {seconds} s"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            return response;
        }
        Refused::Unavailable(error) => return error.error_response(),
    };
    let mut response = ErrorBody::response(status, message);
    if let Some(challenge) = challenge.and_then(|text| HeaderValue::from_str(&text).ok()) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}
