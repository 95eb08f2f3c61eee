//! Who may do what: `PP_AUTH` says which routes need an identity, [`guard`] finds out who is
//! asking (an API key, a dashboard session, the admin token, or nobody) and lets the request
//! through, or answers 401, 403 or 429.
//!
//! - `off`: nothing needs an identity (the original's clients send none); the dashboard's
//!   actions follow `PP_ADMIN_TOKEN` or come from this machine, as before accounts existed.
//! - `writes`: creating works and demands needs the `write` scope, the dashboard's actions and
//!   its audit page `operate`; reads stay open.
//! - `all`: every route needs an identity with its scope (reads `read`), but `/healthz`,
//!   `/readyz`, `/metrics` and what it takes to log in.
//! - `auto` (the default): `off` while the API listens on loopback only with no proxy in front,
//!   `writes` anywhere else — an exposed API is a protected one unless the operator says `off`
//!   (which is logged). A proxy in front is one named in `PP_TRUSTED_PROXY`, or one that says so
//!   on a request (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`): such a request is held to
//!   `writes` ([`guard::Auth::mode_for`]), as is one whose `Host` does not name this machine
//!   ([`crate::origin`]).
//!
//! Modules: [`credentials`] (what a request presents), [`directory`] (the keys, in memory),
//! [`throttle`] (failed attempts per address and per name), [`csrf`] (same-origin writes),
//! [`guard`] (the middleware), [`admin`] (the admin token, and who may act when a request is
//! held to `off`). The dashboard's login page and session routes are the dashboard's
//! ([`crate::dashboard::login`]), built on these.

pub mod admin;
pub mod credentials;
pub mod csrf;
pub mod directory;
pub mod guard;
pub mod throttle;

use std::net::SocketAddr;
use std::time::Duration;

use pp_lib::auth::{Role, Scope, Scopes};
use pp_lib::config::{Rate, positive_duration_setting};
use pp_lib::db::audit_trail::{self, NewAuditEvent, Outcome};
use serde::{Deserialize, Serialize};

use crate::rate_limit::Traffic;
use crate::state::AppState;

/// `PP_AUTH`, as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthSetting {
    /// `off` on loopback, `writes` anywhere else.
    Auto,
    Off,
    Writes,
    All,
}

/// Who may do what, and the limits on proving it.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// Which routes need an identity: off, writes (creating works and demands, and the
    /// dashboard's actions), all (every route but health, readiness and metrics), or auto (off
    /// while listening on loopback only, writes otherwise).
    #[arg(long = "auth", env = "PP_AUTH", value_enum, default_value_t = AuthSetting::Auto)]
    pub setting: AuthSetting,
    /// How long a dashboard login lasts.
    #[arg(long = "session-ttl", env = "PP_SESSION_TTL", default_value = "8h",
          value_parser = positive_duration_setting)]
    pub session_ttl: Duration,
    /// Failed authentications allowed per client address (and failed logins per account name),
    /// e.g. 10/m; past it, 429 until the rate allows one again.
    #[arg(
        long = "auth-failures",
        env = "PP_AUTH_FAILURES",
        default_value = "10/m"
    )]
    pub failures: Rate,
    /// How often the API keys are read again whole, besides whenever PostgreSQL announces a
    /// change (a revocation takes effect within a second that way): the fallback for an
    /// announcement missed.
    #[arg(
        long = "auth-keys-refresh",
        env = "PP_AUTH_KEYS_REFRESH",
        default_value = "5s",
        value_parser = positive_duration_setting
    )]
    pub keys_refresh: Duration,
}

/// The mode the API runs in, `auto` resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Off,
    Writes,
    All,
}

impl Mode {
    /// The mode `setting` gives an API listening on `listen`, behind the proxies named (if
    /// any): `auto` is `off` only on loopback without a proxy named in front.
    pub fn resolve(setting: AuthSetting, listen: SocketAddr, behind_proxy: bool) -> Mode {
        match setting {
            AuthSetting::Off => Mode::Off,
            AuthSetting::Writes => Mode::Writes,
            AuthSetting::All => Mode::All,
            AuthSetting::Auto if listen.ip().is_loopback() && !behind_proxy => Mode::Off,
            AuthSetting::Auto => Mode::Writes,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Writes => "writes",
            Mode::All => "all",
        }
    }
}

/// What a route does, as far as identities care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health, readiness, metrics, and what it takes to log in: never an identity.
    Open,
    /// Reading works, events, stats, the dashboard's figures.
    Read,
    /// Creating works and demands.
    Write,
    /// The dashboard's actions, and its audit trail.
    Operate,
}

impl Access {
    /// The scope a request needs in `mode`, if any.
    pub fn needs(self, mode: Mode) -> Option<Scope> {
        match (mode, self) {
            (Mode::Off, _) | (_, Access::Open) => None,
            (Mode::Writes, Access::Read) => None,
            (Mode::All, Access::Read) => Some(Scope::Read),
            (_, Access::Write) => Some(Scope::Write),
            (_, Access::Operate) => Some(Scope::Operate),
        }
    }

    /// How a route with this access, served for `method`, counts against the rate limits: a
    /// read (the audit trail too) as a read, a change as a write.
    pub fn traffic(self, method: &actix_web::http::Method) -> Traffic {
        match self {
            Access::Open => Traffic::Unlimited,
            _ if method == actix_web::http::Method::GET => Traffic::Read,
            Access::Read | Access::Write | Access::Operate => Traffic::Write,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    Key {
        id: i64,
        name: String,
        scopes: Scopes,
    },
    Account {
        id: i64,
        name: String,
        role: Role,
    },
    /// `PP_ADMIN_TOKEN`: the break-glass operator.
    AdminToken,
}

impl Identity {
    /// What it may do.
    pub fn scopes(&self) -> Scopes {
        match self {
            Identity::Anonymous => Scopes::NONE,
            Identity::Key { scopes, .. } => *scopes,
            Identity::Account { role, .. } => role.scopes(),
            Identity::AdminToken => Scopes::of(&Scope::ALL),
        }
    }

    /// How the audit trail names it.
    pub fn actor(&self) -> String {
        match self {
            Identity::Anonymous => "anonymous".to_owned(),
            Identity::Key { name, .. } => format!("key:{name}"),
            Identity::Account { name, .. } => format!("account:{name}"),
            Identity::AdminToken => "admin-token".to_owned(),
        }
    }

    /// The rate limits' name for it; `None` for nobody (limited by address).
    pub fn rate_key(&self) -> Option<String> {
        match self {
            Identity::Anonymous => None,
            Identity::Key { id, .. } => Some(format!("key:{id}")),
            Identity::Account { id, .. } => Some(format!("account:{id}")),
            Identity::AdminToken => Some("admin-token".to_owned()),
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 401: it needs an identity and presented none.
    Missing(Scope),
    /// 401: what it presented authenticates no one (unknown, revoked, expired, malformed).
    Invalid(String),
    /// 403: who it is may not do this.
    InsufficientScope(Scope),
}

/// Whether `identity` may make a request that needs `needed`.
pub fn authorize(needed: Option<Scope>, identity: &Identity) -> Result<(), Denial> {
    let Some(scope) = needed else {
        return Ok(());
    };
    match identity {
        Identity::Anonymous => Err(Denial::Missing(scope)),
        _ if identity.scopes().contains(scope) => Ok(()),
        _ => Err(Denial::InsufficientScope(scope)),
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditLine {
    pub actor: String,
    pub action: &'static str,
    pub object: String,
    /// The client's address.
    pub source: String,
    pub outcome: Outcome,
}

impl AuditLine {
    /// Writes it in `conn`'s transaction.
    pub fn record(&self, conn: &mut pp_lib::db::PgConnection) -> diesel::QueryResult<()> {
        audit_trail::record(
            conn,
            &NewAuditEvent {
                actor: &self.actor,
                action: self.action,
                object: &self.object,
                source: &self.source,
                outcome: self.outcome.as_str(),
            },
        )
    }
}

/// Records `line` on its own, for what happened outside PostgreSQL (an action on the broker, a
/// refusal). Best effort: a trail that cannot be written now is logged as a warning, with the
/// line, and does not change the answer the action already earned.
pub async fn audit(state: &AppState, line: AuditLine) {
    let written = line.clone();
    if let Err(error) = state.run_db(move |conn| Ok(written.record(conn)?)).await {
        log::warn!("the audit trail missed {line:?}: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(scopes: &[Scope]) -> Identity {
        Identity::Key {
            id: 1,
            name: "ci".to_owned(),
            scopes: Scopes::of(scopes),
        }
    }

    #[test]
    fn auto_is_off_on_loopback_and_writes_anywhere_else() {
        let at =
            |addr: &str| Mode::resolve(AuthSetting::Auto, addr.parse().expect("an address"), false);
        assert_eq!(at("127.0.0.1:3000"), Mode::Off);
        assert_eq!(at("[::1]:3000"), Mode::Off);
        assert_eq!(at("0.0.0.0:3000"), Mode::Writes);
        assert_eq!(at("192.0.2.7:3000"), Mode::Writes);
        let proxied = Mode::resolve(
            AuthSetting::Auto,
            "127.0.0.1:3000".parse().expect("an address"),
            true,
        );
        assert_eq!(proxied, Mode::Writes, "a proxy named in front exposes it");
        let off = Mode::resolve(
            AuthSetting::Off,
            "0.0.0.0:3000".parse().expect("an address"),
            false,
        );
        assert_eq!(off, Mode::Off, "said explicitly, off holds anywhere");
    }

    #[test]
    fn each_mode_asks_each_route_for_its_scope() {
        use Access::{Open, Operate, Read, Write};
        let cases = [
            (Mode::Off, [None, None, None, None]),
            (
                Mode::Writes,
                [None, None, Some(Scope::Write), Some(Scope::Operate)],
            ),
            (
                Mode::All,
                [
                    None,
                    Some(Scope::Read),
                    Some(Scope::Write),
                    Some(Scope::Operate),
                ],
            ),
        ];
        for (mode, needs) in cases {
            let asked: Vec<Option<Scope>> = [Open, Read, Write, Operate]
                .map(|access| access.needs(mode))
                .to_vec();
            assert_eq!(asked, needs, "{mode:?}");
        }
    }

    #[test]
    fn nobody_is_asked_to_authenticate_and_the_wrong_scope_is_forbidden() {
        let needs_write = Some(Scope::Write);
        assert_eq!(
            authorize(needs_write, &Identity::Anonymous),
            Err(Denial::Missing(Scope::Write))
        );
        assert_eq!(
            authorize(needs_write, &key(&[Scope::Read])),
            Err(Denial::InsufficientScope(Scope::Write))
        );
        assert_eq!(authorize(needs_write, &key(&[Scope::Write])), Ok(()));
        assert_eq!(authorize(None, &Identity::Anonymous), Ok(()));
        let viewer = Identity::Account {
            id: 2,
            name: "ada".to_owned(),
            role: Role::Viewer,
        };
        assert_eq!(
            authorize(Some(Scope::Operate), &viewer),
            Err(Denial::InsufficientScope(Scope::Operate))
        );
        assert_eq!(
            authorize(Some(Scope::Operate), &Identity::AdminToken),
            Ok(())
        );
    }
}
