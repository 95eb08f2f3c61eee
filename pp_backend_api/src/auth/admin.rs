//! Who may act from the dashboard (enqueue demands, retry or discard dead letters, read the audit
//! trail) when a request is held to `PP_AUTH=off`, without the `operate` scope (see
//! [`crate::auth`] for everything else):
//!
//! - With `PP_ADMIN_TOKEN` set, an action must carry it in the `X-PP-Admin-Token` header
//!   (compared in constant time); without it, or with another, it is refused 401. A header, not
//!   a cookie: a page of another site can make a browser send cookies along, never a header, so
//!   there is nothing to forge (no CSRF). And not `Authorization`, which a proxy's own basic
//!   authentication in front of the dashboard needs for itself.
//! - Unset, an action is allowed only from this machine ([`Origins::is_from_this_machine`]): a
//!   loopback peer whose request carries no `Forwarded`, `X-Forwarded-For` or `X-Real-IP` header
//!   (a proxy on the same machine adds one, and its clients are not this machine) and names this
//!   machine in `Host` (a page of another site rebinding its name to 127.0.0.1 names its own).
//!   Anything else is refused 403, saying to set the token (or, for a host, `PP_ALLOWED_HOSTS`).
//!   A development machine needs no configuration, and a server exposed without one cannot be
//!   changed by whoever reaches it.

use std::fmt;
use std::str::FromStr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use serde::{Deserialize, Serialize};

use crate::origin::{Origins, is_loopback};

/// The header an action carries the admin token in.
pub const ADMIN_TOKEN_HEADER: HeaderName = HeaderName::from_static("x-pp-admin-token");

/// Shortest token accepted: a guessable token would protect nothing.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin token. Never shown: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl FromStr for AdminToken {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() < MIN_TOKEN_LEN
            || text.len() > 256
            || !text.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(format!(
                "the admin token must be {MIN_TOKEN_LEN} to 256 printable ASCII characters without \
                 spaces (e.g. the output of `openssl rand -hex 24`)"
            ));
        }
        Ok(AdminToken(text.to_owned()))
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl fmt::Display for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl AdminToken {
    /// True when `given` is the token. The time taken depends on the token's length only, not
    /// on how much of `given` matches, so answers tell an attacker nothing about a guess.
    pub fn matches(&self, given: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut difference = u8::from(given.len() != expected.len());
        for (index, byte) in expected.iter().enumerate() {
            let other = given.get(index).copied().unwrap_or(!*byte);
            difference |= std::hint::black_box(byte ^ other);
        }
        difference == 0
    }
}

/// What an action needs, as the page is told (so it asks for a token only when one is needed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionAccess {
    /// Actions carry the admin token in `X-PP-Admin-Token`.
    Token,
    /// No token is configured: actions are allowed from this machine only.
    LoopbackOnly,
    /// `PP_AUTH` is on: actions need the `operate` scope (an operator's login, a key with the
    /// scope, or the admin token).
    Scope,
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: the token is needed and missing or wrong.
    Unauthorized(String),
    /// 403: no token is configured and the request is not from this machine.
    Forbidden(String),
    /// 429: too many wrong tokens from this address; retry after this long.
    Throttled(std::time::Duration),
}

impl Refusal {
    /// What the client is told.
    pub fn message(&self) -> String {
        match self {
            Refusal::Unauthorized(text) | Refusal::Forbidden(text) => text.clone(),
            Refusal::Throttled(wait) => format!(
                "too many failed authentications from this address; retry in {} s",
                seconds_up(*wait)
            ),
        }
    }
}

/// Whole seconds, rounded up, at least 1: what `Retry-After` says.
pub fn seconds_up(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The rule actions follow.
#[derive(Debug, Clone)]
pub struct ActionPolicy {
    token: Option<AdminToken>,
}

impl ActionPolicy {
    pub fn new(token: Option<AdminToken>) -> Self {
        ActionPolicy { token }
    }

    pub fn access(&self) -> ActionAccess {
        match self.token {
            Some(_) => ActionAccess::Token,
            None => ActionAccess::LoopbackOnly,
        }
    }

    /// Allows the action `request` asks for (from where `origins` says it comes), or says why
    /// not.
    pub fn authorize(&self, request: &HttpRequest, origins: &Origins) -> Result<(), Refusal> {
        match &self.token {
            Some(token) => match request.headers().get(&ADMIN_TOKEN_HEADER) {
                Some(given) if token.matches(given.as_bytes()) => Ok(()),
                Some(_) => Err(Refusal::Unauthorized(
                    "the admin token is wrong: actions need the PP_ADMIN_TOKEN the API was \
                     started with, in the X-PP-Admin-Token header"
                        .to_owned(),
                )),
                None => Err(Refusal::Unauthorized(
                    "this action needs the admin token (PP_ADMIN_TOKEN) in the X-PP-Admin-Token \
                     header"
                        .to_owned(),
                )),
            },
            None if origins.is_from_this_machine(request) => Ok(()),
            None => Err(Refusal::Forbidden(
                match local_but_naming(request, origins) {
                    Some(host) => format!(
                        "the request names the host {host:?}, which is not this machine's: actions \
                     without an admin token are allowed only from this machine. If {host:?} is \
                     this machine, add it to PP_ALLOWED_HOSTS"
                    ),
                    _ => {
                        "actions are allowed only from the API's own machine while no admin token \
                      is set: start the API with PP_ADMIN_TOKEN to allow them from elsewhere"
                            .to_owned()
                    }
                },
            )),
        }
    }
}

/// The host a request from a loopback peer, forwarded by no proxy, names when that alone keeps
/// it from being this machine's.
fn local_but_naming(request: &HttpRequest, origins: &Origins) -> Option<String> {
    let local = request
        .peer_addr()
        .is_some_and(|peer| is_loopback(peer.ip()));
    if !local || origins.is_proxied(request) {
        return None;
    }
    origins.foreign_host(request)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn token() -> AdminToken {
        "correct-horse-battery-staple".parse().expect("a token")
    }

    fn origins() -> Origins {
        Origins::new(&crate::origin::OriginConfig {
            trusted_proxies: Vec::new(),
            allowed_hosts: Vec::new(),
        })
    }

    #[test]
    fn tokens_match_only_themselves() {
        let token = token();
        assert!(token.matches(b"correct-horse-battery-staple"));
        for other in [
            &b""[..],
            b"correct-horse-battery-stapl",
            b"correct-horse-battery-staple!",
            b"Correct-horse-battery-staple",
        ] {
            assert!(
                !token.matches(other),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn short_or_blank_tokens_are_refused_at_startup() {
        for bad in [
            "",
            "short",
            "has a space in it ok",
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        ] {
            assert!(bad.parse::<AdminToken>().is_err(), "{bad:?}");
        }
        assert_eq!(format!("{:?} {}", token(), token()), "AdminToken(***) ***");
    }

    #[test]
    fn with_a_token_actions_need_it() {
        let policy = ActionPolicy::new(Some(token()));
        let local = "127.0.0.1:5000".parse().expect("an address");

        let missing = TestRequest::default().peer_addr(local).to_http_request();
        let wrong = TestRequest::default()
            .peer_addr(local)
            .insert_header((ADMIN_TOKEN_HEADER, "correct-horse-battery-stapler"))
            .to_http_request();
        let right = TestRequest::default()
            .peer_addr("10.1.2.3:5000".parse().expect("an address"))
            .insert_header((ADMIN_TOKEN_HEADER, "correct-horse-battery-staple"))
            .to_http_request();

        assert!(matches!(
            policy.authorize(&missing, &origins()),
            Err(Refusal::Unauthorized(_))
        ));
        assert!(matches!(
            policy.authorize(&wrong, &origins()),
            Err(Refusal::Unauthorized(_))
        ));
        assert_eq!(policy.authorize(&right, &origins()), Ok(()));
        assert_eq!(policy.access(), ActionAccess::Token);
    }

    #[test]
    fn without_a_token_only_unproxied_loopback_requests_may_act() {
        let policy = ActionPolicy::new(None);
        let cases = [
            ("127.0.0.1:5000", None, true),
            ("[::1]:5000", None, true),
            ("[::ffff:127.0.0.1]:5000", None, true),
            ("192.168.1.9:5000", None, false),
            (
                "127.0.0.1:5000",
                Some(("x-forwarded-for", "203.0.113.7")),
                false,
            ),
            (
                "127.0.0.1:5000",
                Some(("forwarded", "for=203.0.113.7")),
                false,
            ),
            ("127.0.0.1:5000", Some(("x-real-ip", "203.0.113.7")), false),
            ("127.0.0.1:5000", Some(("host", "localhost:3000")), true),
            ("127.0.0.1:5000", Some(("host", "evil.example:3000")), false),
        ];
        for (peer, header, allowed) in cases {
            let mut request = TestRequest::default().peer_addr(peer.parse().expect("an address"));
            if let Some(header) = header {
                request = request.insert_header(header);
            }
            let outcome = policy.authorize(&request.to_http_request(), &origins());
            assert_eq!(outcome.is_ok(), allowed, "{peer} {header:?}: {outcome:?}");
            if !allowed {
                assert!(
                    matches!(outcome, Err(Refusal::Forbidden(_))),
                    "{peer} {header:?}"
                );
            }
        }
        assert_eq!(policy.access(), ActionAccess::LoopbackOnly);
    }

    #[test]
    fn a_loopback_request_naming_another_host_is_told_of_the_allowed_hosts() {
        let request = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().expect("an address"))
            .insert_header(("host", "evil.example:3000"))
            .to_http_request();

        let outcome = ActionPolicy::new(None).authorize(&request, &origins());

        let Err(Refusal::Forbidden(message)) = outcome else {
            panic!("refused 403, not {outcome:?}");
        };
        assert!(message.contains("PP_ALLOWED_HOSTS"), "{message}");
        assert!(message.contains("evil.example:3000"), "{message}");
    }
}
