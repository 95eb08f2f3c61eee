//! The Prometheus metrics behind `GET /metrics`: requests by route, method and status, their
//! latency, and the database pool's connections in use and idle.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use pp_lib::cache::RedisMetrics;
use pp_lib::db::PgPool;

/// Latency buckets, in seconds: from a cached lookup to a slow query.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The API's registry and its instruments.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool_in_use: IntGauge,
    pool_idle: IntGauge,
    pool_max: IntGauge,
    /// Requests waiting for works (`Prefer: wait`).
    waiting: IntGauge,
    /// Outbox rows the relay published (broker-confirmed).
    pub outbox_published: IntCounter,
    /// 1 while the outbox relay is connected to RabbitMQ.
    pub outbox_broker_connected: IntGauge,
    /// 1 while RabbitMQ blocks the relay's connection (a memory or disk alarm).
    pub outbox_broker_blocked: IntGauge,
    /// The cache's hits and misses, and Redis's errors and breaker.
    pub redis: RedisMetrics,
    /// Requests refused with 429.
    pub rate_limited: IntCounter,
    /// Requests let through unchecked because Redis did not answer.
    pub rate_limit_failed_open: IntCounter,
    /// Requests the guard or the login refused, by reason.
    auth_refusals: IntCounterVec,
    /// Requests the front door refused, or mended, before any handler, by reason
    /// (`crate::front_door::Framing`'s labels).
    pub framing: IntCounterVec,
}

/// Why the guard or the login refused a request, as the metric's label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No identity where one is needed.
    Missing,
    /// Credentials that authenticate no one.
    Invalid,
    /// An identity without the scope.
    InsufficientScope,
    /// A change asked from another site.
    CrossSite,
    /// No identity, from this machine but naming a host that is not this machine's.
    ForeignHost,
    /// Too many failed authentications from the address.
    Throttled,
    /// A wrong name or password.
    LoginFailed,
    /// Too many failed logins from the address or for the name.
    LoginThrottled,
}

impl AuthRefusal {
    fn label(self) -> &'static str {
        match self {
            AuthRefusal::Missing => "missing",
            AuthRefusal::Invalid => "invalid",
            AuthRefusal::InsufficientScope => "insufficient_scope",
            AuthRefusal::CrossSite => "cross_site",
            AuthRefusal::ForeignHost => "foreign_host",
            AuthRefusal::Throttled => "throttled",
            AuthRefusal::LoginFailed => "login_failed",
            AuthRefusal::LoginThrottled => "login_throttled",
        }
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("pp_api".to_owned()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests answered, by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time from request to response, by route and method",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        let pool_in_use =
            IntGauge::new("db_pool_connections_in_use", "Pooled connections lent out")?;
        let pool_idle = IntGauge::new("db_pool_connections_idle", "Pooled connections waiting")?;
        let pool_max = IntGauge::new("db_pool_connections_max", "Most connections the pool opens")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(pool_in_use.clone()))?;
        registry.register(Box::new(pool_idle.clone()))?;
        registry.register(Box::new(pool_max.clone()))?;
        let waiting = IntGauge::new(
            "waiting_requests",
            "Requests waiting for a work to be done (Prefer: wait)",
        )?;
        registry.register(Box::new(waiting.clone()))?;
        let outbox_published = IntCounter::new(
            "outbox_published_total",
            "Accepted demands the outbox relay published, confirmed by the broker",
        )?;
        let outbox_broker_connected = IntGauge::new(
            "outbox_broker_connected",
            "1 while the outbox relay is connected to RabbitMQ",
        )?;
        registry.register(Box::new(outbox_published.clone()))?;
        registry.register(Box::new(outbox_broker_connected.clone()))?;
        let outbox_broker_blocked = IntGauge::new(
            "outbox_broker_blocked",
            "1 while RabbitMQ blocks the outbox relay's connection (a memory or disk alarm)",
        )?;
        registry.register(Box::new(outbox_broker_blocked.clone()))?;
        let redis = RedisMetrics::register(&registry)?;
        let rate_limited = IntCounter::new(
            "rate_limited_total",
            "Requests refused with 429 because their client's rate limit was spent",
        )?;
        let rate_limit_failed_open = IntCounter::new(
            "rate_limit_failed_open_total",
            "Requests let through without a rate limit check because Redis did not answer",
        )?;
        registry.register(Box::new(rate_limited.clone()))?;
        registry.register(Box::new(rate_limit_failed_open.clone()))?;
        let auth_refusals = IntCounterVec::new(
            Opts::new(
                "auth_refusals_total",
                "Requests refused for who asked: missing, invalid, insufficient_scope, \
                 cross_site, throttled, login_failed, login_throttled",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(auth_refusals.clone()))?;
        let framing = IntCounterVec::new(
            Opts::new(
                "http_framing_total",
                "Requests dealt with before any handler for their HTTP/1 framing: refused \
                 (malformed, missing_host, bad_length, headers_too_large) or mended \
                 (length_added: an HTTP/1.0 POST without Content-Length, taken as empty)",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(framing.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            pool_in_use,
            pool_idle,
            pool_max,
            waiting,
            outbox_published,
            outbox_broker_connected,
            outbox_broker_blocked,
            redis,
            rate_limited,
            rate_limit_failed_open,
            auth_refusals,
            framing,
        })
    }

    /// Counts one refusal for who asked.
    pub fn refused(&self, reason: AuthRefusal) {
        self.auth_refusals
            .with_label_values(&[reason.label()])
            .inc();
    }

    /// Counts one answered request.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, method, status_label(status)])
            .inc();
        self.latency
            .with_label_values(&[route, method])
            .observe(seconds);
    }

    /// The text exposition of every metric, with the pool's state read now.
    pub fn render(&self, pool: &PgPool, waiting: usize) -> Result<String, prometheus::Error> {
        self.waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
        let state = pool.state();
        let idle = i64::from(state.idle_connections);
        self.pool_idle.set(idle);
        self.pool_in_use.set(i64::from(state.connections) - idle);
        self.pool_max.set(i64::from(pool.max_size()));
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text)?;
        String::from_utf8(text).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }
}

/// Status codes as static labels, so a label is never allocated per request: the statuses the
/// API answers, exactly; any other by its class.
fn status_label(status: u16) -> &'static str {
    const EXACT: [(u16, &str); 12] = [
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (308, "308"),
        (400, "400"),
        (404, "404"),
        (405, "405"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    if let Some((_, label)) = EXACT.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_labelled_exactly_or_by_class() {
        let cases = [
            (200, "200"),
            (422, "422"),
            (204, "2xx"),
            (418, "4xx"),
            (599, "5xx"),
        ];
        for (status, label) in cases {
            assert_eq!(status_label(status), label, "{status}");
        }
    }
}
