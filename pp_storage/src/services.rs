//! The services pp runs on — PostgreSQL, RabbitMQ, Redis — where the binaries would look for
//! them, and whether each answers.
//!
//! The URLs come from pp_lib's settings (flag, environment, `.env`, default), exactly as every
//! binary reads them, and are only ever shown redacted. `pp_storage check` prints one line per
//! service for people and for `scripts/setup.sh`, which starts what does not answer:
//!
//! ```text
//! postgresql 127.0.0.1 5432 local answers postgres://postgres@127.0.0.1:5432/personalproject
//! rabbitmq 127.0.0.1 5672 local answers amqp://guest:***@127.0.0.1:5672/%2f
//! redis 127.0.0.1 6379 local silent redis://127.0.0.1:6379
//! ```
//!
//! Fields: the service, its host and port, `local` (loopback: ours to start) or `remote`, then
//! `answers`, `silent` (no TCP connection within [`PROBE_TIMEOUT`]) or `unchecked` (a Unix
//! socket), and the URL.

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use pp_lib::Error;
use pp_lib::config::{AmqpNodes, DEFAULT_LOCAL_REDIS_URL, SecretUrl};

/// Longest wait for one TCP connection.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two probes while waiting for a service.
const PROBE_PAUSE: Duration = Duration::from_secs(1);

/// The services pp uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceKind {
    Postgresql,
    Rabbitmq,
    Redis,
}

impl ServiceKind {
    /// Every service, in the order they are reported.
    pub const ALL: [ServiceKind; 3] = [
        ServiceKind::Postgresql,
        ServiceKind::Rabbitmq,
        ServiceKind::Redis,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Postgresql => "postgresql",
            ServiceKind::Rabbitmq => "rabbitmq",
            ServiceKind::Redis => "redis",
        }
    }

    /// The environment variable its URL comes from.
    pub fn variable(self) -> &'static str {
        match self {
            ServiceKind::Postgresql => "DATABASE_URL",
            ServiceKind::Rabbitmq => "AMQP_URL",
            ServiceKind::Redis => "REDIS_URL",
        }
    }

    /// The port a URL of this scheme means when it names none; `None` for a scheme this service
    /// does not speak.
    fn default_port(self, scheme: &str) -> Option<u16> {
        match (self, scheme) {
            (ServiceKind::Postgresql, "postgres" | "postgresql") => Some(5432),
            (ServiceKind::Rabbitmq, "amqp") => Some(5672),
            (ServiceKind::Rabbitmq, "amqps") => Some(5671),
            (ServiceKind::Redis, "redis" | "rediss") => Some(6379),
            _ => None,
        }
    }
}

/// Where a service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp {
        host: String,
        port: u16,
    },
    /// A Unix socket (Redis only): not probed.
    Socket(String),
}

impl Address {
    /// True for the loopback addresses: a service there is this machine's to start.
    pub fn is_local(&self) -> bool {
        match self {
            Address::Tcp { host, .. } => matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1"),
            Address::Socket(_) => false,
        }
    }
}

/// A service and the URL pp would use for it.
#[derive(Debug, Clone)]
pub struct Service {
    pub kind: ServiceKind,
    pub url: SecretUrl,
    pub address: Address,
}

impl Service {
    /// Reads where `kind` listens from its URL; an unsupported scheme or an unreadable host or
    /// port is a configuration error naming the variable (the URL redacted).
    pub fn new(kind: ServiceKind, url: SecretUrl) -> Result<Self, Error> {
        let scheme = url.scheme().to_owned();
        let address = match (kind, scheme.as_str()) {
            (ServiceKind::Redis, "unix" | "redis+unix") => {
                Address::Socket(format!("/{}", url.path()))
            }
            _ => {
                let default_port = kind.default_port(&scheme).ok_or_else(|| {
                    Error::Config(format!(
                        "{} has an unsupported scheme '{scheme}': {url}",
                        kind.variable()
                    ))
                })?;
                let (host, port) = url.host_and_port(default_port).map_err(|reason| {
                    Error::Config(format!("{}={url}: {reason}", kind.variable()))
                })?;
                Address::Tcp { host, port }
            }
        };
        Ok(Service { kind, url, address })
    }
}

/// The services of `kinds` (all three when empty) at the URLs pp is configured with. Redis is
/// optional for pp: without `REDIS_URL` the local one that `make setup` starts and the tests use
/// is meant.
pub fn configured(
    kinds: &[ServiceKind],
    database: &SecretUrl,
    amqp: &AmqpNodes,
    redis: Option<&SecretUrl>,
) -> Result<Vec<Service>, Error> {
    let kinds = if kinds.is_empty() {
        &ServiceKind::ALL[..]
    } else {
        kinds
    };
    let mut services = Vec::new();
    for &kind in kinds {
        let urls = match kind {
            ServiceKind::Postgresql => vec![database.clone()],
            // Each node of a cluster, a line each.
            ServiceKind::Rabbitmq => amqp.iter().cloned().collect(),
            ServiceKind::Redis => vec![match redis {
                Some(url) => url.clone(),
                None => DEFAULT_LOCAL_REDIS_URL
                    .parse()
                    .map_err(|reason: String| Error::Config(reason))?,
            }],
        };
        for url in urls {
            services.push(Service::new(kind, url)?);
        }
    }
    Ok(services)
}

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reachability {
    Answers,
    Silent,
    Unchecked,
}

/// One TCP connection attempt to each address the host resolves to, bounded by
/// [`PROBE_TIMEOUT`] each.
pub fn probe(address: &Address) -> Reachability {
    let Address::Tcp { host, port } = address else {
        return Reachability::Unchecked;
    };
    let Ok(addrs) = (host.as_str(), *port).to_socket_addrs() else {
        return Reachability::Silent;
    };
    for addr in addrs {
        if TcpStream::connect_timeout(&addr, PROBE_TIMEOUT).is_ok() {
            return Reachability::Answers;
        }
    }
    Reachability::Silent
}

/// Probes every service, then probes the silent ones again each second until they answer or
/// `wait` has passed. Zero probes once.
pub fn check(services: &[Service], wait: Duration) -> Vec<Reachability> {
    let deadline = Instant::now() + wait;
    let mut found: Vec<Reachability> = services
        .iter()
        .map(|service| probe(&service.address))
        .collect();
    while found.contains(&Reachability::Silent) && Instant::now() + PROBE_PAUSE <= deadline {
        std::thread::sleep(PROBE_PAUSE);
        for (service, state) in services.iter().zip(found.iter_mut()) {
            if *state == Reachability::Silent {
                *state = probe(&service.address);
            }
        }
    }
    found
}

/// The report line of a service.
pub struct Line<'a>(pub &'a Service, pub Reachability);

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Line(service, state) = self;
        let (host, port) = match &service.address {
            Address::Tcp { host, port } => (host.as_str(), port.to_string()),
            Address::Socket(path) => (path.as_str(), "-".to_owned()),
        };
        let place = match &service.address {
            Address::Socket(_) => "socket",
            address if address.is_local() => "local",
            _ => "remote",
        };
        let state = match state {
            Reachability::Answers => "answers",
            Reachability::Silent => "silent",
            Reachability::Unchecked => "unchecked",
        };
        write!(
            f,
            "{} {host} {port} {place} {state} {}",
            service.kind.name(),
            service.url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(kind: ServiceKind, url: &str) -> Result<Service, Error> {
        Service::new(kind, url.parse().expect("a URL"))
    }

    #[test]
    fn addresses_come_from_the_url_or_the_schemes_port() {
        let cases = [
            (
                ServiceKind::Postgresql,
                "postgres://u:pw@db:5433/pp",
                "db",
                5433,
            ),
            (
                ServiceKind::Postgresql,
                "postgresql://127.0.0.1/pp",
                "127.0.0.1",
                5432,
            ),
            (
                ServiceKind::Rabbitmq,
                "amqp://guest:guest@127.0.0.1/%2f",
                "127.0.0.1",
                5672,
            ),
            (
                ServiceKind::Rabbitmq,
                "amqps://mq.internal/%2f",
                "mq.internal",
                5671,
            ),
            (ServiceKind::Redis, "redis://[::1]:6380/0", "::1", 6380),
            (ServiceKind::Redis, "redis://:pw@/0", "127.0.0.1", 6379),
        ];
        for (kind, url, host, port) in cases {
            let found = service(kind, url).map(|service| service.address);
            let expected = Address::Tcp {
                host: host.to_owned(),
                port,
            };
            assert_eq!(found.ok(), Some(expected), "{url}");
        }
        let socket = service(ServiceKind::Redis, "unix:///run/redis.sock").map(|s| s.address);
        assert_eq!(
            socket.ok(),
            Some(Address::Socket("/run/redis.sock".to_owned()))
        );
    }

    #[test]
    fn each_node_of_a_cluster_is_a_service_of_its_own() {
        let nodes: AmqpNodes = "amqp://a:5672/%2f,amqp://b:5673/%2f,amqps://c/%2f"
            .parse()
            .expect("three nodes");
        let database = "postgres://db/pp".parse().expect("a URL");
        let services =
            configured(&[ServiceKind::Rabbitmq], &database, &nodes, None).expect("configured");
        let addresses: Vec<Address> = services.into_iter().map(|s| s.address).collect();
        let tcp = |host: &str, port| Address::Tcp {
            host: host.to_owned(),
            port,
        };
        assert_eq!(addresses, [tcp("a", 5672), tcp("b", 5673), tcp("c", 5671)]);
    }

    #[test]
    fn bad_urls_name_the_variable_and_never_the_password() {
        let cases = [
            (
                ServiceKind::Rabbitmq,
                "http://guest:hunter2@h/",
                "AMQP_URL has an unsupported scheme 'http'",
            ),
            (
                ServiceKind::Postgresql,
                "postgres://u:hunter2@h:99999/pp",
                "DATABASE_URL=",
            ),
            (ServiceKind::Redis, "redis://:hunter2@h:port", "REDIS_URL="),
        ];
        for (kind, url, reason) in cases {
            let error = service(kind, url).expect_err(url).to_string();
            assert!(error.contains(reason), "{url}: {error}");
            assert!(!error.contains("hunter2"), "{url}: {error}");
        }
    }

    #[test]
    fn loopback_services_are_local() {
        for (url, local) in [
            ("redis://127.0.0.1", true),
            ("redis://localhost:1", true),
            ("redis://[::1]", true),
            ("redis://cache.internal", false),
            ("unix:///run/redis.sock", false),
        ] {
            let service = service(ServiceKind::Redis, url).expect(url);
            assert_eq!(service.address.is_local(), local, "{url}");
        }
    }

    #[test]
    fn a_listening_port_answers_and_a_closed_one_is_silent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let closed = pp_lib::testkit::ports::closed_port();
        let [open, closed] =
            [listener.local_addr().expect("bound"), closed.addr()].map(|addr| Address::Tcp {
                host: "127.0.0.1".to_owned(),
                port: addr.port(),
            });

        assert_eq!(probe(&open), Reachability::Answers);
        assert_eq!(probe(&closed), Reachability::Silent);
    }

    #[test]
    fn report_lines_show_the_url_redacted() {
        let service = service(
            ServiceKind::Rabbitmq,
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        )
        .expect("a URL");
        assert_eq!(
            Line(&service, Reachability::Silent).to_string(),
            "rabbitmq 127.0.0.1 5672 local silent amqp://guest:***@127.0.0.1:5672/%2f"
        );
    }
}
