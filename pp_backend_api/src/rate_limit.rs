//! Per-client rate limits on the routes that write (and, when asked, on the ones that read),
//! enforced together by every replica through Redis (see `pp_lib::cache::rate_limit`).
//!
//! A client is who the guard found (an API key, a dashboard account, the admin token: see
//! [`crate::auth`]), else its address ([`crate::origin`]: the peer's, or what a trusted proxy
//! forwards). A header a client makes up cannot name it: a new made-up name would be a new
//! quota. Every answer of a limited route carries the IETF draft's `RateLimit-Policy`
//! and `RateLimit` headers; a refused request gets 429 with `Retry-After`. When Redis cannot
//! answer, the request is let through (fail open) and counted.

use std::sync::Arc;

use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::{HttpMessage, HttpResponse};
use pp_lib::cache::{Decision, Quota, RateLimiter, Redis, Verdict};
use pp_lib::config::Rate;

use crate::error::{ErrorBody, ErrorResponse};
use crate::metrics::Metrics;
use crate::origin::Origins;

/// The IETF draft's header stating the quota policy.
pub const RATE_LIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// The IETF draft's header stating what is left of the quota.
pub const RATE_LIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The policy's name in both headers.
const POLICY_NAME: &str = "pp";

/// The rate limit settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RateLimitConfig {
    /// Requests per client on POST /work and POST /work/demand, e.g. 50/s, 3000/m (unset: no
    /// limit). Needs Redis (REDIS_URL); without it, or while it is down, nothing is limited.
    #[arg(long = "rate-limit", env = "PP_RATE_LIMIT")]
    pub rate: Option<Rate>,
    /// Requests a client may make at once before the rate applies (default: one second's worth,
    /// at least 1).
    #[arg(long = "rate-burst", env = "PP_RATE_BURST", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub burst: Option<u32>,
    /// Limit the reading routes too (GET /work/..., /stats): on or off.
    #[arg(
        long = "rate-limit-reads",
        env = "PP_RATE_LIMIT_READS",
        default_value = "off",
        value_parser = pp_lib::config::parse_switch,
        action = clap::ArgAction::Set
    )]
    pub reads: bool,
}

impl RateLimitConfig {
    /// No limit at all.
    pub fn off() -> Self {
        pp_lib::config::defaults()
    }

    /// The quota, when a rate is set.
    pub fn quota(&self) -> Option<Quota> {
        let rate = self.rate?;
        let burst = self
            .burst
            .unwrap_or_else(|| rate.per_second().ceil().clamp(1.0, 1_000_000.0) as u32);
        Some(Quota { rate, burst })
    }
}

/// What the middleware needs: the limiter, whom to trust, and where to count refusals. The
/// server registers it (a [`SharedRateLimits`]) as app data of its own.
pub struct RateLimits {
    limiter: RateLimiter,
    reads: bool,
    origins: Arc<Origins>,
    policy: HeaderValue,
    metrics: Arc<Metrics>,
}

impl RateLimits {
    /// The limits `config` asks for, over `redis`, counting clients as `origins` finds them;
    /// `None` when no rate is set. A rate without Redis is refused at startup: it would
    /// silently limit nothing.
    pub fn new(
        config: &RateLimitConfig,
        redis: Option<&Redis>,
        origins: Arc<Origins>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(quota) = config.quota() else {
            return Ok(None);
        };
        let Some(redis) = redis else {
            anyhow::bail!(
                "PP_RATE_LIMIT={} needs Redis to share the limit between replicas: set REDIS_URL",
                quota.rate
            );
        };
        let policy = HeaderValue::from_str(&format!(
            "\"{POLICY_NAME}\";q={};w={}",
            quota.burst,
            quota.window_seconds()
        ))
        .expect("digits and a quoted token are a valid header value");
        Ok(Some(RateLimits {
            limiter: RateLimiter::new(redis.clone(), quota),
            reads: config.reads,
            origins,
            policy,
            metrics,
        }))
    }

    fn applies_to(&self, traffic: Traffic) -> bool {
        match traffic {
            Traffic::Write => true,
            Traffic::Read => self.reads,
            Traffic::Unlimited => false,
        }
    }
}

/// What a route does, as far as rate limits care: writes are limited whenever limits are on,
/// reads only when `PP_RATE_LIMIT_READS` asks for it, the operations routes never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Traffic {
    Write,
    Read,
    Unlimited,
}

/// What counting a request against its client's quota made of it.
pub enum Charge {
    /// On to the handler; the quota's headers go on its answer ([`Counted::mark`]).
    Admitted(ServiceRequest, Option<Counted>),
    /// Over the quota: the 429.
    Refused(ServiceResponse),
}

/// The quota a request was counted against, for its answer's headers.
pub struct Counted {
    limits: Arc<RateLimits>,
    decision: Option<Decision>,
}

impl Counted {
    /// Puts the quota's headers on `response`.
    pub fn mark<B>(&self, response: &mut ServiceResponse<B>) {
        add_quota_headers(response.headers_mut(), &self.limits, self.decision.as_ref());
    }
}

/// On each resource (which knows its [`Traffic`]; [`crate::resource::only`] runs it after the
/// guard): counts the request against its client's quota, refuses it 429 when it is spent, and
/// otherwise says what headers its answer gets.
pub async fn charge_request(traffic: Traffic, request: ServiceRequest) -> Charge {
    let limits = request.app_data::<SharedRateLimits>().cloned().flatten();
    let Some(limits) = limits.filter(|limits| limits.applies_to(traffic)) else {
        return Charge::Admitted(request, None);
    };
    let named = request
        .extensions()
        .get::<RateKey>()
        .map(|key| key.0.clone());
    let client = named.unwrap_or_else(|| match limits.origins.client_of(request.request()) {
        Some(ip) => format!("ip:{ip}"),
        None => "ip:unknown".to_owned(),
    });
    match charge(&limits, &client).await {
        Charged::Refused(response) => Charge::Refused(request.into_response(response)),
        Charged::Allowed(decision) => Charge::Admitted(request, Some(Counted { limits, decision })),
    }
}

/// 429: the client's rate limit is spent (only when `PP_RATE_LIMIT` is set).
#[derive(utoipa::ToResponse)]
#[response(
    description = "The client's rate limit is spent (only when rate limits are on)",
    headers(
        ("Retry-After" = u32, description = "Seconds until a request would be allowed"),
        ("RateLimit-Policy" = String, description = "The client's quota, e.g. `\"pp\";q=100;w=2`"),
        ("RateLimit" = String, description = "What is left: `\"pp\";r=0;t=<seconds until whole again>`"),
    )
)]
#[allow(dead_code)] // Read by the document's generator only.
pub struct TooManyRequests(#[to_schema] ErrorBody);

/// Who a request counts against, where the guard found someone (their key, login or token):
/// put in the request's extensions for [`charge_request`].
#[derive(Debug, Clone)]
pub struct RateKey(pub String);

/// What counting a request found.
enum Charged {
    /// Within the quota (the decision, when Redis answered).
    Allowed(Option<Decision>),
    /// Over it: the 429.
    Refused(HttpResponse),
}

/// Counts one request of `client` against its quota.
async fn charge(limits: &RateLimits, client: &str) -> Charged {
    let decision = match limits.limiter.check(client).await {
        Verdict::Decided(decision) => decision,
        Verdict::FailedOpen => {
            limits.metrics.rate_limit_failed_open.inc();
            return Charged::Allowed(None);
        }
    };
    if decision.allowed {
        return Charged::Allowed(Some(decision));
    }
    limits.metrics.rate_limited.inc();
    let quota = limits.limiter.quota();
    let retry_after = whole_seconds(decision.retry_after);
    let mut response = ErrorBody::response(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "rate limit exceeded: {} per client with bursts of {}; retry in {retry_after} s",
            quota.rate, quota.burst
        ),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    add_quota_headers(response.headers_mut(), limits, Some(&decision));
    Charged::Refused(response)
}

/// Counts a request the guard refused (an identity without the scope) against that identity's
/// quota, as if it had been served, where limits apply to it: refusals cost what requests
/// cost, so an identity cannot make the API refuse (and record) without end. The 429 once the
/// quota is spent.
pub async fn charge_refused(
    limits: Option<&RateLimits>,
    traffic: Traffic,
    key: &RateKey,
) -> Option<HttpResponse> {
    let limits = limits.filter(|limits| limits.applies_to(traffic))?;
    match charge(limits, &key.0).await {
        Charged::Refused(response) => Some(response),
        Charged::Allowed(_) => None,
    }
}

fn add_quota_headers(headers: &mut HeaderMap, limits: &RateLimits, decision: Option<&Decision>) {
    headers.insert(RATE_LIMIT_POLICY, limits.policy.clone());
    if let Some(decision) = decision {
        let value = format!(
            "\"{POLICY_NAME}\";r={};t={}",
            decision.remaining,
            whole_seconds(decision.reset)
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(RATE_LIMIT, value);
        }
    }
}

/// Seconds, rounded up: a client that waits this long is not refused for having come early.
fn whole_seconds(duration: std::time::Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The server's limits (`None`: no rate set), registered as app data for [`charge_request`] and
/// the guard.
pub type SharedRateLimits = Option<Arc<RateLimits>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_defaults_to_one_second_of_the_rate() {
        let mut config = RateLimitConfig::off();
        assert!(config.quota().is_none());
        config.rate = Some("50/s".parse().expect("a rate"));
        assert_eq!(config.quota().map(|quota| quota.burst), Some(50));
        config.rate = Some("10/m".parse().expect("a rate"));
        assert_eq!(config.quota().map(|quota| quota.burst), Some(1));
        config.burst = Some(100);
        assert_eq!(config.quota().map(|quota| quota.burst), Some(100));
    }
}
