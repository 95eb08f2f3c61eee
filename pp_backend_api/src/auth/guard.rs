//! The middleware on every resource (outside its rate limit): refuses a cross-site change, finds
//! out who is asking, and lets the request through when its route's [`Access`] allows them.
//!
//! In order:
//!
//! 1. a request that changes something (not GET, HEAD, OPTIONS) from another site is refused
//!    403 ([`csrf`]), in every mode: a page elsewhere cannot make a browser act here, whatever
//!    cookie or loopback address it carries;
//! 2. an open route (health, readiness, metrics, the page, the login) is served as it is;
//! 3. the credentials the request presents ([`credentials`]) name an [`Identity`]: an API key
//!    found in the [`KeyDirectory`] (or in PostgreSQL, for a key made since the directory was
//!    read), the account of a live session, the admin token;
//! 4. the identity is checked against the scope the route needs in this mode ([`authorize`]):
//!    401 with `WWW-Authenticate: Bearer` when it presented nothing or nothing valid, 403 with
//!    `error="insufficient_scope"` when it may not; else the request goes on, the identity in its
//!    extensions for the rate limit, the handlers and the audit trail.
//!
//! Where the route needs an identity, credentials are looked at [`Look::Strictly`]: one that
//! authenticates no one (an unknown, malformed, revoked or expired key, a wrong admin token, an
//! ended session) costs a failure against the client's address, and past `PP_AUTH_FAILURES` the
//! client's next key the API does not already know is answered 429 without a look in the
//! database. A key the directory knows, a live session and the right admin token are never
//! throttled (a session is looked up first: only one not found counts, or is answered 429); a
//! key made in the last seconds, asked from a throttled address, waits for the next reading of
//! the keys.
//!
//! Where it needs none (every route with `PP_AUTH=off`, the reads with `writes`), credentials are
//! looked at [`Look::Leniently`]: a valid one names the client (its own rate limit, its name in
//! the audit trail), and one that authenticates no one — or that cannot be checked, the database
//! being down — is ignored, uncounted: the request is anonymous, as before there were keys.
//!
//! `PP_AUTH=auto` on loopback is `off` for the requests made on this machine, and `writes` for
//! those a proxy forwards (they carry `Forwarded`, `X-Forwarded-For` or `X-Real-IP`): a proxy
//! in front makes the API exposed, and an exposed API is a protected one ([`Auth::mode_for`]).
//! So is one reached under a name that is not this machine's ([`crate::origin`]): such a
//! request, refused for want of an identity, is answered 403 naming `PP_ALLOWED_HOSTS`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{Error, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};
use chrono::Utc;
use pp_lib::auth::{Scope, is_api_token, token_hash};
use pp_lib::db::audit_trail::Outcome;
use pp_lib::db::identities;
use tokio::sync::Semaphore;

use super::credentials::{Presented, SESSION_COOKIE, presented, presents_nothing};
use super::directory::KeyDirectory;
use super::throttle::Throttle;
use super::{
    Access, AuditLine, AuthConfig, AuthSetting, Denial, Identity, Mode, audit, authorize, csrf,
};
use crate::auth::admin::{ADMIN_TOKEN_HEADER, ActionPolicy, AdminToken, Refusal, seconds_up};
use crate::error::{ApiError, ErrorBody, ErrorResponse};
use crate::metrics::AuthRefusal;
use crate::origin::Origins;
use crate::rate_limit::{RateKey, SharedRateLimits, charge_refused};
use crate::state::AppState;

/// Failed logins allowed per account name, as a multiple of those allowed per address: one
/// address cannot lock an account out by itself.
pub const NAME_FAILURES_FACTOR: f64 = 5.0;

/// How often a refused action of one identity on one route is written to the audit trail, at
/// most: a page polling what it may not see leaves a line a minute, not one a poll.
const REFUSALS_RECORDED_EVERY: Duration = Duration::from_secs(60);
/// Refusals remembered for that, at most.
const MAX_REFUSALS_REMEMBERED: usize = 10_000;

/// What the guard and the login share: the mode, the keys, the failures counted.
#[derive(Debug)]
pub struct Auth {
    /// `PP_AUTH` as given.
    pub setting: AuthSetting,
    /// The mode `setting` gives where the API listens.
    pub mode: Mode,
    pub directory: Arc<KeyDirectory>,
    /// Unknown keys and tokens, per client address.
    pub key_failures: Throttle,
    /// Failed logins, per client address and name tried.
    pub login_failures: Throttle,
    /// Failed logins, per account name tried ([`NAME_FAILURES_FACTOR`] times as many).
    pub name_failures: Throttle,
    /// Password checks running at once, at most (each takes 19 MiB and a core for a moment).
    pub password_checks: Semaphore,
    pub admin_token: Option<AdminToken>,
    pub session_ttl: Duration,
    /// Where requests come from.
    pub origins: Arc<Origins>,
    /// When each (actor, route) refusal was last written to the audit trail.
    refusals_recorded: Mutex<HashMap<(String, String), Instant>>,
}

impl Auth {
    pub fn new(
        setting: AuthSetting,
        mode: Mode,
        config: &AuthConfig,
        admin_token: Option<AdminToken>,
        origins: Arc<Origins>,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Auth {
            setting,
            mode,
            directory: Arc::new(KeyDirectory::read_every(config.keys_refresh)),
            key_failures: Throttle::new(config.failures),
            login_failures: Throttle::new(config.failures),
            name_failures: Throttle::scaled(config.failures, NAME_FAILURES_FACTOR),
            password_checks: Semaphore::new(cores.clamp(1, 8)),
            admin_token,
            session_ttl: config.session_ttl,
            origins,
            refusals_recorded: Mutex::new(HashMap::new()),
        }
    }

    /// The mode `request` is held to: the API's, but `writes` where `auto` made it `off` on
    /// loopback and the request is not from this machine after all: a proxy passed it on
    /// ([`Origins::is_proxied`]), or it
    /// names a host that is not this machine's (see [`Auth::held_for_its_host`]).
    pub fn mode_for(&self, request: &HttpRequest) -> Mode {
        if self.is_auto_off()
            && (self.origins.is_proxied(request) || self.held_for_its_host(request).is_some())
        {
            Mode::Writes
        } else {
            self.mode
        }
    }

    /// `auto` made the API `off`, on loopback.
    fn is_auto_off(&self) -> bool {
        self.setting == AuthSetting::Auto && self.mode == Mode::Off
    }

    /// The host `request` names, where that alone holds it to `writes` under `auto` on loopback:
    /// a request from a loopback peer, forwarded by no proxy, that names a host not this
    /// machine's (a proxy that forwards nothing, or a page of another site rebinding its name
    /// to this address).
    pub fn held_for_its_host(&self, request: &HttpRequest) -> Option<String> {
        if !self.is_auto_off() || self.origins.is_proxied(request) {
            return None;
        }
        let host = self.origins.foreign_host(request)?;
        self.origins.warn_held_for_host(&host);
        Some(host)
    }

    /// Whether `identity`, asking with `request`, may use the dashboard's actions: with the
    /// `operate` scope, always; without it, only where the request is held to `off`, as the
    /// [`ActionPolicy`] says (the admin token, or this machine).
    pub fn may_act(
        &self,
        policy: &ActionPolicy,
        request: &HttpRequest,
        identity: &Identity,
    ) -> Result<(), Refusal> {
        if identity.scopes().contains(Scope::Operate) {
            return Ok(());
        }
        match self.mode_for(request) {
            Mode::Off => {
                let outcome = policy.authorize(request, &self.origins);
                if matches!(outcome, Err(Refusal::Unauthorized(_)))
                    && request.headers().contains_key(&ADMIN_TOKEN_HEADER)
                {
                    // A wrong token counts like an unknown key: the right one never fails, so
                    // it is never throttled, whoever else fails from its address.
                    let client = self.client(request);
                    if let Err(Refused::Throttled(wait)) = self.check_failures(&client) {
                        return Err(Refusal::Throttled(wait));
                    }
                    self.failed(&client);
                }
                outcome
            }
            Mode::Writes | Mode::All => Err(Refusal::Forbidden(
                "this needs the operate scope: an operator's login, a key with the scope, or the \
                 admin token"
                    .to_owned(),
            )),
        }
    }

    /// `Err(429)` while `client` has failed too often.
    fn check_failures(&self, client: &str) -> Result<(), Refused> {
        match self
            .key_failures
            .wait(&throttle_key(client), Instant::now())
        {
            Some(wait) => Err(Refused::Throttled(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed authentication of `client`.
    fn failed(&self, client: &str) {
        self.key_failures
            .failed(&throttle_key(client), Instant::now());
    }

    /// The client's address (a trusted proxy's forwarded client when there is one), as the
    /// failures are counted and the audit trail says where from.
    pub fn client(&self, request: &HttpRequest) -> String {
        self.origins
            .client_of(request)
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }

    /// Whether a refusal of `actor` on `route` is due in the audit trail (at most one a minute
    /// for each), noting it when it is.
    fn refusal_due(&self, actor: &str, route: &str) -> bool {
        let mut recorded = self
            .refusals_recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if recorded.len() >= MAX_REFUSALS_REMEMBERED {
            recorded.retain(|_, at| now.duration_since(*at) < REFUSALS_RECORDED_EVERY);
        }
        let key = (actor.to_owned(), route.to_owned());
        match recorded.get(&key) {
            Some(at) if now.duration_since(*at) < REFUSALS_RECORDED_EVERY => false,
            // Bounded: with as many refusals remembered from the last minute, a new one is not
            // recorded (the metrics still count it) until some age out.
            None if recorded.len() >= MAX_REFUSALS_REMEMBERED => false,
            _ => {
                recorded.insert(key, now);
                true
            }
        }
    }
}

/// How an address is counted: itself, or for IPv6 its /64 (what one machine is usually given,
/// so a client cannot take a fresh address for each guess).
pub fn throttle_key(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let [a, b, c, d, ..] = v6.segments();
            format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
        }
        _ => address.to_owned(),
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

/// How hard credentials are looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The route needs an identity: every credential is checked, failures are counted and
    /// throttled, and one that cannot be checked (the database down) is a 503.
    Strictly,
    /// The route needs none: a credential that authenticates no one, or cannot be checked, is
    /// ignored and not counted.
    Leniently,
}

/// What the guard made of a request.
pub enum Admission {
    /// On to the handler, with who asked in its extensions.
    Admitted(ServiceRequest),
    /// Refused: the answer.
    Refused(ServiceResponse),
}

/// The guard, on each resource (which knows its [`Access`]; [`crate::resource::only`] runs it
/// first): refuses cross-site changes, finds who is asking, and admits them when the route
/// allows them (401, 403, 429 otherwise). `mode` is the API's, as its [`Auth`] holds it: given
/// to the resource when it is built, so the common read is admitted without looking anything up.
pub async fn admit(
    access: Access,
    mode: Mode,
    request: ServiceRequest,
) -> Result<Admission, Error> {
    if csrf::is_safe(request.method())
        && (access == Access::Open
            || (access == Access::Read && mode != Mode::All && presents_nothing(request.headers())))
    {
        // A read that may be anonymous, from a client that shows nothing, is nobody's: there
        // is nothing to find out. The common read costs the guard one pass over its headers.
        return Ok(Admission::Admitted(request));
    }
    let (Some(auth), Some(state)) = (
        request.app_data::<web::Data<Auth>>().cloned(),
        request.app_data::<web::Data<AppState>>().cloned(),
    ) else {
        // Never served unguarded: an app built without them is a bug, answered 500.
        return Err(actix_web::error::ErrorInternalServerError(
            "the app is built without its guard",
        ));
    };
    let refuse = |request: ServiceRequest, refused: Refused| {
        if let Some(reason) = refused.counted() {
            state.metrics.refused(reason);
        }
        Ok(Admission::Refused(request.into_response(refusal(&refused))))
    };
    if !csrf::is_safe(request.method()) {
        let host = request.connection_info().host().to_owned();
        if let Err(reason) = csrf::same_origin(request.method(), request.headers(), &host) {
            return refuse(request, Refused::CrossSite(reason));
        }
    }
    if access == Access::Open {
        return Ok(Admission::Admitted(request));
    }
    let needed = access.needs(auth.mode_for(request.request()));
    let look = if needed.is_some() {
        Look::Strictly
    } else {
        Look::Leniently
    };
    let found = match identify(&auth, &state, request.request(), look).await {
        Ok(found) => found,
        Err(refused) => return refuse(request, refused),
    };
    let identity = match found {
        Found::Who(identity) => identity,
        Found::Nobody(_) if look == Look::Leniently => Identity::Anonymous,
        Found::Nobody(ended) => {
            let refused = Refused::Denied(Denial::Invalid(ended.reason().to_owned()));
            return refuse(request, refused);
        }
    };
    let rate_key = identity.rate_key().map(RateKey);
    if let Err(denial) = authorize(needed, &identity) {
        if let Some(key) = &rate_key {
            let traffic = access.traffic(request.method());
            let limits = request.app_data::<SharedRateLimits>().cloned().flatten();
            if let Some(limited) = charge_refused(limits.as_deref(), traffic, key).await {
                return Ok(Admission::Refused(request.into_response(limited)));
            }
        }
        if access == Access::Operate && identity != Identity::Anonymous {
            audit_refusal(&state, &auth, request.request(), &identity).await;
        }
        let refused = match (denial, auth.held_for_its_host(request.request())) {
            (Denial::Missing(scope), Some(host)) => Refused::ForeignHost { host, scope },
            (denial, _) => Refused::Denied(denial),
        };
        return refuse(request, refused);
    }
    if let Some(key) = rate_key {
        request.extensions_mut().insert(key);
    }
    request.extensions_mut().insert(identity);
    Ok(Admission::Admitted(request))
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
    /// Not checked: the database did not answer, where no identity is needed.
    Unchecked,
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
            Ended::Unchecked => "the credentials could not be checked",
        }
    }
}

/// Why the guard answered instead of the route.
enum Refused {
    Denied(Denial),
    CrossSite(String),
    /// 403: no identity, where the request was held to `writes` only for the host it names.
    ForeignHost {
        host: String,
        scope: Scope,
    },
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
            Refused::ForeignHost { .. } => AuthRefusal::ForeignHost,
            Refused::Throttled(_) => AuthRefusal::Throttled,
            Refused::Unavailable(_) => return None,
        })
    }
}

/// Who the credentials `request` presents name, looked at as `look` says.
async fn identify(
    auth: &Auth,
    state: &AppState,
    request: &HttpRequest,
    look: Look,
) -> Result<Found, Refused> {
    let cookie = request.cookie(SESSION_COOKIE);
    let found = match presented(request.headers(), cookie.as_ref().map(|c| c.value())) {
        Presented::Nothing => return Ok(Found::Who(Identity::Anonymous)),
        Presented::Unreadable(reason) => Ok(Found::Nobody(Ended::Unreadable(reason))),
        Presented::ApiKey(token) => api_key(auth, state, request, &token, look).await,
        Presented::AdminToken(given) => match &auth.admin_token {
            // The right token is never throttled, whoever else fails from its address.
            Some(token) if token.matches(&given) => return Ok(Found::Who(Identity::AdminToken)),
            _ => {
                guess(auth, request, look)?;
                Ok(Found::Nobody(Ended::WrongAdminToken))
            }
        },
        Presented::Session(token) => session(auth, state, request, &token, look).await,
    };
    match found {
        // A credential that cannot be checked where none is needed: the request is anonymous.
        Err(Refused::Unavailable(_)) if look == Look::Leniently => {
            Ok(Found::Nobody(Ended::Unchecked))
        }
        found => found,
    }
}

/// A credential found wrong without a lookup (not a key, a wrong admin token): looked at
/// strictly, it is answered 429 while its client has failed too often, else counted as one more
/// failure; looked at leniently, neither.
fn guess(auth: &Auth, request: &HttpRequest, look: Look) -> Result<(), Refused> {
    if look == Look::Leniently {
        return Ok(());
    }
    let client = auth.client(request);
    auth.check_failures(&client)?;
    auth.failed(&client);
    Ok(())
}

/// The account whose live session `token` is. Looked up first, whatever the address's failures:
/// a live session, like a known key, is never throttled by what others behind its address (a
/// NAT, a proxy) got wrong; only a session that is not found counts, or is answered 429.
async fn session(
    auth: &Auth,
    state: &AppState,
    request: &HttpRequest,
    token: &str,
    look: Look,
) -> Result<Found, Refused> {
    let hash = token_hash(token);
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
        None => {
            if look == Look::Strictly {
                let client = auth.client(request);
                auth.check_failures(&client)?;
                auth.failed(&client);
            }
            Found::Nobody(Ended::Session)
        }
    })
}

/// The key `token` is, from the directory, or PostgreSQL when the directory does not know it.
async fn api_key(
    auth: &Auth,
    state: &AppState,
    request: &HttpRequest,
    token: &str,
    look: Look,
) -> Result<Found, Refused> {
    if !is_api_token(token) {
        // Malformed or mistyped (the checksum says so): no lookup, but a failure all the same.
        guess(auth, request, look)?;
        return Ok(Found::Nobody(Ended::NotAKey));
    }
    let hash = token_hash(token);
    let key = match auth.directory.find(&hash) {
        Some(key) => key,
        None => {
            if look == Look::Strictly {
                let client = auth.client(request);
                auth.check_failures(&client)?;
            }
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
                    if look == Look::Strictly {
                        auth.failed(&auth.client(request));
                    }
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

/// Records that `identity` tried an action it may not do (once a minute for each identity and
/// route at most: the route's pattern, so that asking for `…/k1/retry`, `…/k2/retry` and so on
/// is one route).
async fn audit_refusal(state: &AppState, auth: &Auth, request: &HttpRequest, identity: &Identity) {
    let actor = identity.actor();
    let route = request
        .match_pattern()
        .unwrap_or_else(|| request.path().to_owned());
    let object = format!("{} {route}", request.method());
    if !auth.refusal_due(&actor, &object) {
        return;
    }
    let line = AuditLine {
        actor,
        action: "refused",
        object,
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
        Refused::ForeignHost { host, scope } => (
            StatusCode::FORBIDDEN,
            format!(
                "the request names the host {host:?}, which is not this machine's, so it is \
                 held to PP_AUTH=writes: this needs an identity with the {scope} scope. If \
                 {host:?} is this machine, add it to PP_ALLOWED_HOSTS"
            ),
            None,
        ),
        Refused::Throttled(wait) => {
            let refusal = Refusal::Throttled(*wait);
            let mut response =
                ErrorBody::response(StatusCode::TOO_MANY_REQUESTS, refusal.message());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds_up(*wait)));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_remembered_are_bounded_and_each_is_recorded_once_a_minute() {
        let config = AuthConfig {
            setting: AuthSetting::Writes,
            session_ttl: Duration::from_secs(60),
            failures: "10/m".parse().expect("a rate"),
            keys_refresh: Duration::from_secs(5),
        };
        let origins = Origins::new(&crate::origin::OriginConfig {
            trusted_proxies: Vec::new(),
            allowed_hosts: Vec::new(),
        });
        let auth = Auth::new(
            AuthSetting::Writes,
            Mode::Writes,
            &config,
            None,
            Arc::new(origins),
        );

        assert!(auth.refusal_due("key:a", "POST /x"));
        assert!(!auth.refusal_due("key:a", "POST /x"), "once a minute");
        for n in 1..MAX_REFUSALS_REMEMBERED {
            assert!(auth.refusal_due(&format!("key:{n}"), "POST /x"));
        }
        assert!(
            !auth.refusal_due("key:one-too-many", "POST /x"),
            "the map is full: not recorded"
        );
        let remembered = auth
            .refusals_recorded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        assert_eq!(remembered, MAX_REFUSALS_REMEMBERED);
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_anything_else_by_itself() {
        assert_eq!(throttle_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            throttle_key("2001:db8:1:2:ffff::9"),
            throttle_key("2001:db8:1:2::1"),
            "one machine's addresses are one client"
        );
        assert_ne!(
            throttle_key("2001:db8:1:3::1"),
            throttle_key("2001:db8:1:2::1")
        );
        assert_eq!(throttle_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(throttle_key("::ffff:192.0.2.7"), "::ffff:192.0.2.7");
        assert_eq!(throttle_key("unknown"), "unknown");
    }
}
