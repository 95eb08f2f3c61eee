//! Where a request came from, in one place: the peer, the proxies in front (`PP_TRUSTED_PROXY`)
//! and what they forward, and the host the request names (`Host`, and `PP_ALLOWED_HOSTS`).
//!
//! - The client's address ([`Origins::client_ip`]) is the peer's, or — only when the peer is a
//!   trusted proxy — the nearest `X-Forwarded-For` entry that is not a trusted proxy, walking from
//!   the right (each proxy appends the address it saw) and stopping at the first entry that does
//!   not parse: what lies left of it was written by someone no trusted proxy vouches for. Entries
//!   may carry a port (`203.0.113.7:5000`, `[2001:db8::7]:5000`), as some proxies write them.
//! - The client came over HTTPS ([`Origins::came_over_https`]) when a trusted proxy says so in
//!   `X-Forwarded-Proto`.
//! - A request comes from this machine ([`Origins::is_from_this_machine`]) when its peer is a
//!   loopback address, no proxy says it forwarded it (`Forwarded`, `X-Forwarded-For`,
//!   `X-Real-IP`), and it names this machine in `Host` ([`Origins::names_this_machine`]):
//!   `localhost` (and `*.localhost`), a loopback address, the machine's own name, or a host
//!   listed in `PP_ALLOWED_HOSTS`. A page of another site whose name an attacker points at
//!   127.0.0.1 (DNS rebinding) reaches the API from a loopback peer, but names its own host.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::HttpRequest;
use actix_web::http::Version;
use actix_web::http::header::{self, HeaderMap, HeaderName};

/// Headers a proxy adds: a request carrying one is not from this machine, whatever its peer.
const FORWARDING_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Where requests may come from, and what names this machine.
#[derive(Debug, Clone, clap::Args)]
pub struct OriginConfig {
    /// Comma-separated addresses of the proxies in front of the API: from these peers only,
    /// X-Forwarded-For names the client.
    #[arg(
        long = "trusted-proxy",
        env = "PP_TRUSTED_PROXY",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpAddr>,
    /// Comma-separated host names that name this machine besides localhost, loopback addresses
    /// and its own name (`pp.local`, or `*.example.test` for every name under one): a request
    /// from this machine must name one of them in Host.
    #[arg(
        long = "allowed-hosts",
        env = "PP_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_parser = allowed_host
    )]
    pub allowed_hosts: Vec<String>,
}

/// One `PP_ALLOWED_HOSTS` entry: a host name (or `*.` and a domain), lower-cased, without port.
fn allowed_host(text: &str) -> Result<String, String> {
    let host = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let name = host.strip_prefix("*.").unwrap_or(&host);
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'));
    if valid {
        Ok(host)
    } else {
        Err(format!(
            "{text:?} is not a host name: give names like pp.local or *.example.test, without a \
             port or scheme"
        ))
    }
}

/// The rules [`OriginConfig`] gives, shared by the guard, the dashboard and the rate limits.
#[derive(Debug)]
pub struct Origins {
    trusted_proxies: Vec<IpAddr>,
    allowed_hosts: Vec<String>,
    /// The machine's own name, lower-cased, if it has one.
    machine_name: Option<String>,
    /// Whether a request naming a foreign host was seen yet (it is logged once).
    foreign_host_seen: AtomicBool,
    /// Whether an HTTP/1.0 request from a loopback peer was seen yet (it is logged once).
    http10_seen: AtomicBool,
}

impl Origins {
    pub fn new(config: &OriginConfig) -> Self {
        Origins {
            trusted_proxies: config.trusted_proxies.clone(),
            allowed_hosts: config.allowed_hosts.clone(),
            machine_name: machine_name(),
            foreign_host_seen: AtomicBool::new(false),
            http10_seen: AtomicBool::new(false),
        }
    }

    /// Whether proxies are named in front of the API.
    pub fn behind_proxy(&self) -> bool {
        !self.trusted_proxies.is_empty()
    }

    /// The client's address: the peer's, or — only from a trusted proxy — the nearest forwarded
    /// one that is not a trusted proxy (see the module's doc). `None` without a peer.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<IpAddr> {
        let peer = peer?;
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let entries: Vec<&str> = headers
            .get_all(HeaderName::from_static("x-forwarded-for"))
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(hop) = forwarded_address(entry) else {
                break;
            };
            client = hop;
            if !self.trusted_proxies.contains(&hop) {
                break;
            }
        }
        Some(client)
    }

    /// [`Origins::client_ip`] of `request`.
    pub fn client_of(&self, request: &HttpRequest) -> Option<IpAddr> {
        self.client_ip(request.headers(), request.peer_addr().map(|peer| peer.ip()))
    }

    /// Whether the client reached the API over HTTPS: a trusted proxy says so in
    /// `X-Forwarded-Proto` (its last value, the one the proxy nearest the API wrote). Anyone
    /// else saying it is not believed.
    pub fn came_over_https(&self, request: &HttpRequest) -> bool {
        let from_proxy = request
            .peer_addr()
            .is_some_and(|peer| self.trusted_proxies.contains(&peer.ip()));
        from_proxy
            && request
                .headers()
                .get_all(HeaderName::from_static("x-forwarded-proto"))
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .is_some_and(|scheme| scheme.trim().eq_ignore_ascii_case("https"))
    }

    /// Whether `request` comes from this machine: a loopback peer, forwarded by no proxy, naming
    /// this machine in `Host`.
    pub fn is_from_this_machine(&self, request: &HttpRequest) -> bool {
        is_local_peer(request.peer_addr())
            && !self.is_proxied(request)
            && self.names_this_machine(request)
    }

    /// Whether a proxy passed `request` on: it carries `Forwarded`, `X-Forwarded-For` or
    /// `X-Real-IP`, or it came over HTTP/1.0, which is what a proxy speaks to its upstream unless
    /// told otherwise (nginx's `proxy_pass` with no other setting does, with `Host` set to the
    /// upstream's own address and no forwarding header) and what no browser or curl uses
    /// unasked. The first HTTP/1.0 request from a loopback peer is logged, loudly, once.
    pub fn is_proxied(&self, request: &HttpRequest) -> bool {
        if is_forwarded(request) {
            return true;
        }
        if request.version() >= Version::HTTP_11 {
            return false;
        }
        if is_local_peer(request.peer_addr()) && !self.http10_seen.swap(true, Ordering::Relaxed) {
            log::warn!(
                "an HTTP/1.0 request came from this machine: it is taken for a proxy's (nginx \
                 speaks HTTP/1.0 upstream unless told otherwise, forwarding nothing) and is not \
                 treated as coming from this machine. Behind a proxy, have it send HTTP/1.1 and \
                 X-Forwarded-For (deploy/nginx/pp.conf) and name it in PP_TRUSTED_PROXY (logged \
                 once)"
            );
        }
        true
    }

    /// Whether the host `request` names (its `Host`, or an HTTP/2 authority) is this machine's:
    /// `localhost` or a name under it, a loopback address, the machine's own name, or one of
    /// `PP_ALLOWED_HOSTS`. A request that names no host names no other machine either.
    pub fn names_this_machine(&self, request: &HttpRequest) -> bool {
        let Some(named) = named_host(request) else {
            return true;
        };
        let host = host_without_port(&named)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return is_loopback(ip);
        }
        self.machine_name.as_deref() == Some(host.as_str())
            || self
                .allowed_hosts
                .iter()
                .any(|allowed| match allowed.strip_prefix("*.") {
                    Some(domain) => host
                        .strip_suffix(domain)
                        .is_some_and(|sub| sub.ends_with('.')),
                    None => *allowed == host,
                })
    }

    /// The host `request` names, when it is not this machine's, for an error message.
    pub fn foreign_host(&self, request: &HttpRequest) -> Option<String> {
        if self.names_this_machine(request) {
            return None;
        }
        Some(named_host(request).unwrap_or_default())
    }

    /// Says in the log, once, loudly, that a request from this machine named `named`, which is
    /// not this machine's, and was held to `writes` for it (a proxy in front that forwards
    /// nothing, or a page rebinding its name to this address).
    pub fn warn_held_for_host(&self, named: &str) {
        if !self.foreign_host_seen.swap(true, Ordering::Relaxed) {
            log::warn!(
                "a request from this machine named the host {named:?}, which is not this \
                 machine's: it is held to PP_AUTH=writes, as if from elsewhere (a proxy in front \
                 that forwards no X-Forwarded-For, or a page rebinding its name to this address). \
                 If {named:?} is this machine, add it to PP_ALLOWED_HOSTS; if a proxy is in \
                 front, name it in PP_TRUSTED_PROXY (logged once)"
            );
        }
    }
}

/// The host a request names: `Host`, else the URI's authority (HTTP/2).
fn named_host(request: &HttpRequest) -> Option<String> {
    request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            request
                .uri()
                .authority()
                .map(|authority| authority.to_string())
        })
}

/// `host[:port]` or `[v6][:port]` without the port.
fn host_without_port(named: &str) -> &str {
    if named.starts_with('[') {
        return named.split_inclusive(']').next().unwrap_or(named);
    }
    match named.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => named,
    }
}

/// One `X-Forwarded-For` entry: an address, with or without a port.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(ip);
    }
    entry.parse::<SocketAddr>().ok().map(|socket| socket.ip())
}

/// The machine's own name, lower-cased (Linux's, else `HOSTNAME`).
fn machine_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|name| !name.is_empty())
}

/// Whether `request` carries `Forwarded`, `X-Forwarded-For` or `X-Real-IP`.
fn is_forwarded(request: &HttpRequest) -> bool {
    FORWARDING_HEADERS
        .iter()
        .any(|name| request.headers().contains_key(*name))
}

fn is_local_peer(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|peer| is_loopback(peer.ip()))
}

/// A loopback address, IPv4-mapped ones included.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;
    use actix_web::test::TestRequest;

    use super::*;

    fn origins(trusted: &[&str], allowed: &[&str]) -> Origins {
        let mut origins = Origins::new(&OriginConfig {
            trusted_proxies: trusted
                .iter()
                .map(|ip| ip.parse().expect("an address"))
                .collect(),
            allowed_hosts: allowed
                .iter()
                .map(|host| allowed_host(host).expect("a host"))
                .collect(),
        });
        origins.machine_name = Some("build-7".to_owned());
        origins
    }

    fn forwarded(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.append(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_str(value).expect("a header value"),
        );
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let origins = origins(&["10.0.0.9", "10.0.0.1"], &[]);
        let headers = forwarded("203.0.113.7, 10.0.0.9");
        assert_eq!(
            origins.client_ip(&headers, Some(ip("192.0.2.1"))),
            Some(ip("192.0.2.1")),
            "an untrusted peer cannot name another client"
        );
        assert_eq!(
            origins.client_ip(&headers, Some(ip("10.0.0.1"))),
            Some(ip("203.0.113.7")),
            "the nearest hop that is not a trusted proxy"
        );
        assert_eq!(
            origins.client_ip(&HeaderMap::new(), Some(ip("10.0.0.1"))),
            Some(ip("10.0.0.1")),
            "a trusted proxy that forwards nothing is the client"
        );
    }

    #[test]
    fn an_entry_that_does_not_parse_ends_the_walk_and_ports_are_understood() {
        let origins = origins(&["10.0.0.1"], &[]);
        let proxy = Some(ip("10.0.0.1"));
        assert_eq!(
            origins.client_ip(&forwarded("198.51.100.1, 203.0.113.7:5000"), proxy),
            Some(ip("203.0.113.7")),
            "a proxy that appends ip:port names the client, not the entry left of it"
        );
        assert_eq!(
            origins.client_ip(&forwarded("198.51.100.1, [2001:db8::7]:443"), proxy),
            Some(ip("2001:db8::7"))
        );
        assert_eq!(
            origins.client_ip(&forwarded("198.51.100.1, garbage, 10.0.0.1"), proxy),
            Some(ip("10.0.0.1")),
            "what lies left of an unreadable entry is nobody's word: the last proxy is the client"
        );
        assert_eq!(
            origins.client_ip(&forwarded("198.51.100.1, garbage"), proxy),
            Some(ip("10.0.0.1"))
        );
    }

    fn named(host: &str) -> HttpRequest {
        TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().expect("an address"))
            .insert_header((header::HOST, host))
            .to_http_request()
    }

    #[test]
    fn this_machine_is_localhost_a_loopback_address_its_name_or_an_allowed_host() {
        let origins = origins(&[], &["pp.local", "*.example.test"]);
        for host in [
            "localhost",
            "localhost:3000",
            "LOCALHOST.:3000",
            "app.localhost:3000",
            "127.0.0.1:3000",
            "127.8.9.10",
            "[::1]:3000",
            "[::ffff:127.0.0.1]:3000",
            "build-7:3000",
            "pp.local:3000",
            "api.example.test",
        ] {
            assert!(origins.names_this_machine(&named(host)), "{host}");
            assert!(origins.is_from_this_machine(&named(host)), "{host}");
        }
        for host in [
            "evil.example:3000",
            "localhost.evil.example",
            "example.test",
            "notexample.test",
            "10.0.0.5:3000",
            "[2001:db8::1]:3000",
            "pp.local.evil.example",
        ] {
            assert!(!origins.names_this_machine(&named(host)), "{host}");
            assert!(!origins.is_from_this_machine(&named(host)), "{host}");
        }
        assert_eq!(
            origins.foreign_host(&named("evil.example:3000")).as_deref(),
            Some("evil.example:3000")
        );
        assert_eq!(origins.foreign_host(&named("localhost:3000")), None);
    }

    #[test]
    fn a_forwarded_request_or_a_remote_peer_is_not_this_machine() {
        let origins = origins(&[], &[]);
        let proxied = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().expect("an address"))
            .insert_header((header::HOST, "localhost:3000"))
            .insert_header(("x-real-ip", "203.0.113.7"))
            .to_http_request();
        let remote = TestRequest::default()
            .peer_addr("192.0.2.1:5000".parse().expect("an address"))
            .insert_header((header::HOST, "localhost:3000"))
            .to_http_request();
        assert!(!origins.is_from_this_machine(&proxied));
        assert!(!origins.is_from_this_machine(&remote));
    }

    #[test]
    fn an_http10_request_is_a_proxys_never_this_machines() {
        let origins = origins(&[], &[]);
        let request = |version| {
            TestRequest::default()
                .version(version)
                .peer_addr("127.0.0.1:5000".parse().expect("an address"))
                .insert_header((header::HOST, "127.0.0.1:3000"))
                .to_http_request()
        };
        let plain_proxy_pass = request(Version::HTTP_10);
        assert!(origins.is_proxied(&plain_proxy_pass));
        assert!(!origins.is_from_this_machine(&plain_proxy_pass));
        let curl = request(Version::HTTP_11);
        assert!(!origins.is_proxied(&curl));
        assert!(origins.is_from_this_machine(&curl));
        assert!(origins.is_from_this_machine(&request(Version::HTTP_2)));
    }

    #[test]
    fn https_is_believed_from_a_trusted_proxy_only() {
        let origins = origins(&["127.0.0.1"], &[]);
        let request = |peer: &str, proto: &str| {
            TestRequest::default()
                .peer_addr(peer.parse().expect("an address"))
                .insert_header(("x-forwarded-proto", proto))
                .to_http_request()
        };
        assert!(origins.came_over_https(&request("127.0.0.1:5000", "https")));
        assert!(origins.came_over_https(&request("127.0.0.1:5000", "http, https")));
        assert!(!origins.came_over_https(&request("127.0.0.1:5000", "http")));
        assert!(!origins.came_over_https(&request("192.0.2.1:5000", "https")));
        let plain = TestRequest::default()
            .peer_addr("127.0.0.1:5000".parse().expect("an address"))
            .to_http_request();
        assert!(!origins.came_over_https(&plain));
    }

    #[test]
    fn allowed_hosts_are_names_without_ports_or_schemes() {
        assert_eq!(allowed_host(" PP.Local. ").as_deref(), Ok("pp.local"));
        assert_eq!(
            allowed_host("*.example.test").as_deref(),
            Ok("*.example.test")
        );
        for bad in ["", "http://pp.local", "pp.local:3000", "*.", "a b"] {
            assert!(allowed_host(bad).is_err(), "{bad:?}");
        }
    }
}
