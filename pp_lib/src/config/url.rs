//! [`SecretUrl`]: a connection URL that may carry a password, and prints without it.

use std::fmt;
use std::str::FromStr;

use crate::error::redact_secrets;

/// A connection URL that may carry a password. `Display` and `Debug` show it redacted; only
/// [`SecretUrl::expose`] gives the real text, for the one call that connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL as given, password included: pass it to a client library, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The same URL with the path (the database name, for PostgreSQL) replaced.
    pub fn with_path(&self, path: &str) -> SecretUrl {
        let (base, query) = match self.0.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (self.0.as_str(), None),
        };
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        let path_start = base[authority_start..]
            .find('/')
            .map_or(base.len(), |i| authority_start + i);
        let mut url = format!("{}/{}", &base[..path_start], path.trim_start_matches('/'));
        if let Some(query) = query {
            url.push('?');
            url.push_str(query);
        }
        SecretUrl(url)
    }

    /// The scheme, before `://` (`postgres`, `amqp`, `redis`, …).
    pub fn scheme(&self) -> &str {
        self.0.split_once("://").map_or("", |(scheme, _)| scheme)
    }

    /// The host and port the URL points at: `[v6]` brackets taken off, an empty host meaning
    /// the local machine (`127.0.0.1`), a missing port meaning `default_port`. The reason it
    /// gives when the port is not one never holds the password.
    pub fn host_and_port(&self, default_port: u16) -> Result<(String, u16), String> {
        let rest = self
            .0
            .split_once("://")
            .map_or(self.0.as_str(), |(_, rest)| rest);
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let host_port = authority
            .rfind('@')
            .map_or(authority, |at| &authority[at + 1..]);
        let (host, port) = match host_port.strip_prefix('[') {
            Some(bracketed) => match bracketed.split_once(']') {
                Some((host, after)) => (host, after.strip_prefix(':')),
                None => return Err("an IPv6 host lacks its closing `]`".to_owned()),
            },
            None => match host_port.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            },
        };
        let host = if host.is_empty() { "127.0.0.1" } else { host };
        let port = match port.filter(|port| !port.is_empty()) {
            None => default_port,
            Some(text) => text
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| format!("the port `{text}` is not a number from 1 to 65535"))?,
        };
        Ok((host.to_owned(), port))
    }

    /// The path of the URL without its leading `/` (for PostgreSQL, the database name).
    pub fn path(&self) -> &str {
        let base = self.0.split(['?', '#']).next().unwrap_or_default();
        let authority_start = base.find("://").map_or(0, |i| i + 3);
        base[authority_start..]
            .find('/')
            .map_or("", |i| &base[authority_start + i + 1..])
    }
}

impl FromStr for SecretUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        match text.split_once("://") {
            Some((scheme, rest))
                if !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                    && !rest.is_empty() =>
            {
                Ok(SecretUrl(text.to_owned()))
            }
            _ => Err(format!(
                "`{}` is not a URL of the form scheme://[user[:password]@]host[:port][/path]",
                redact_secrets(text)
            )),
        }
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_secrets(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_urls_print_redacted() {
        let url: SecretUrl = "postgres://pp:secret@db/pp".parse().expect("a valid URL");
        assert_eq!(url.to_string(), "postgres://pp:***@db/pp");
        assert_eq!(format!("{url:?}"), "SecretUrl(postgres://pp:***@db/pp)");
        assert_eq!(url.expose(), "postgres://pp:secret@db/pp");
    }

    #[test]
    fn database_name_can_be_read_and_replaced() {
        let url: SecretUrl = "postgres://u:p@h:5432/pp?sslmode=disable"
            .parse()
            .expect("a valid URL");
        assert_eq!(url.path(), "pp");
        let other = url.with_path("postgres");
        assert_eq!(
            other.expose(),
            "postgres://u:p@h:5432/postgres?sslmode=disable"
        );
        let bare: SecretUrl = "postgres://h".parse().expect("a valid URL");
        assert_eq!(bare.path(), "");
        assert_eq!(bare.with_path("x").expose(), "postgres://h/x");
    }

    #[test]
    fn hosts_and_ports_are_read_from_urls() {
        let cases = [
            ("postgres://u:p@ss@db:5433/pp", 5432, Ok(("db", 5433))),
            (
                "amqp://guest:guest@127.0.0.1/%2f",
                5672,
                Ok(("127.0.0.1", 5672)),
            ),
            ("redis://[::1]:6380/0", 6379, Ok(("::1", 6380))),
            ("redis://[::1]", 6379, Ok(("::1", 6379))),
            ("redis://:pw@/0", 6379, Ok(("127.0.0.1", 6379))),
            ("postgres://h:/pp", 5432, Ok(("h", 5432))),
            ("postgres://h:0/pp", 5432, Err("`0`")),
            ("postgres://u:secret@h:x/pp", 5432, Err("`x`")),
            ("redis://[::1:6379", 6379, Err("`]`")),
        ];
        for (text, default_port, expected) in cases {
            let url: SecretUrl = text.parse().expect("a URL");
            match (url.host_and_port(default_port), expected) {
                (Ok((host, port)), Ok((want_host, want_port))) => {
                    assert_eq!((host.as_str(), port), (want_host, want_port), "{text}");
                }
                (Err(reason), Err(part)) => {
                    assert!(reason.contains(part), "{text}: {reason}");
                    assert!(!reason.contains("secret"), "{text}: {reason}");
                }
                (found, _) => panic!("{text}: {found:?}"),
            }
        }
        assert_eq!(
            "amqps://h"
                .parse::<SecretUrl>()
                .map(|url| url.scheme().to_owned()),
            Ok("amqps".to_owned())
        );
    }
}
