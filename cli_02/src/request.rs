//! The request: checking what the user typed, and laying out the exact bytes to send.
//!
//! Pure: [`encode_request`] turns a [`Request`] into bytes, and the `parse_*` functions are
//! clap value parsers, so a bad method, target or header is a usage error (exit 2) before any
//! connection is made. Nothing the user types can smuggle a CR or LF into the request.

use crate::response::{is_field_byte, is_token};

/// The `User-Agent` sent unless the user gives one.
pub const USER_AGENT: &str = concat!("cli_02/", env!("CARGO_PKG_VERSION"));

/// Headers cli_02 writes itself: the framing of the request and the one-exchange connection
/// depend on them, so the user may not override them.
const RESERVED_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "connection"];

/// One request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// An HTTP token, e.g. `GET`.
    pub method: String,
    /// An origin-form target: `/path?query`.
    pub target: String,
    /// The `Host` header: the address as the user gave it.
    pub host: String,
    /// Extra headers, in the order given; they replace the defaults of the same name.
    pub headers: Vec<HeaderField>,
    /// Sent with `Content-Length` (and `Content-Type: application/json` unless a header says
    /// otherwise).
    pub body: Option<Vec<u8>>,
}

/// A `Name: value` header given with `-H`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: String,
    pub value: String,
}

/// Lays out the request: request line, headers, blank line, body.
pub fn encode_request(request: &Request) -> Vec<u8> {
    let given = |name: &str| {
        request
            .headers
            .iter()
            .any(|field| field.name.eq_ignore_ascii_case(name))
    };
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    let defaults = [
        ("Host", request.host.as_str()),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
    ];
    for (name, value) in defaults {
        if !given(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for field in &request.headers {
        head.push_str(&format!("{}: {}\r\n", field.name, field.value));
    }
    match &request.body {
        Some(body) => {
            if !given("Content-Type") {
                head.push_str("Content-Type: application/json\r\n");
            }
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        // RFC 9110 §8.6: a method that defines a meaning for content says it has none.
        None if ["POST", "PUT", "PATCH"].contains(&request.method.as_str()) => {
            head.push_str("Content-Length: 0\r\n");
        }
        None => {}
    }
    // One exchange: the server may close after answering, which also ends a body that has no
    // length.
    head.push_str("Connection: close\r\n\r\n");
    let mut bytes = head.into_bytes();
    if let Some(body) = &request.body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// A method is an HTTP token: `GET`, `POST`, `PURGE`… (methods are case-sensitive).
pub fn parse_method(text: &str) -> Result<String, String> {
    if is_token(text.as_bytes()) {
        Ok(text.to_owned())
    } else {
        Err("a method is a token such as GET or POST: letters, digits and !#$%&'*+-.^_`|~".into())
    }
}

/// An origin-form target: starts with `/`, visible ASCII only (percent-encode the rest).
pub fn parse_target(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err("the path must start with `/`, e.g. /work/search?work_code=api".into());
    }
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the path may not contain {bad:?}: percent-encode spaces, controls and non-ASCII"
        ));
    }
    Ok(text.to_owned())
}

/// `Name: value`, the name a token, the value free of CR, LF and other control bytes.
pub fn parse_header_field(text: &str) -> Result<HeaderField, String> {
    let (name, value) = text
        .split_once(':')
        .ok_or("a header is `Name: value`, with a colon")?;
    if !is_token(name.as_bytes()) {
        return Err(format!(
            "`{}` is not a header name: letters, digits and !#$%&'*+-.^_`|~, no spaces",
            name.escape_debug()
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "{name} is written by cli_02 itself (the request's framing depends on it)"
        ));
    }
    let value = value.trim_matches([' ', '\t']);
    if !value.bytes().all(is_field_byte) {
        return Err(format!(
            "the value of {name} may not contain CR, LF or other control characters"
        ));
    }
    Ok(HeaderField {
        name: name.to_owned(),
        value: value.to_owned(),
    })
}

/// `host:port`, with a numeric port; the host may be a name, an IPv4 or a bracketed IPv6 address.
pub fn parse_addr(text: &str) -> Result<String, String> {
    let usage = || {
        format!(
            "`{}` is not host:port, e.g. 127.0.0.1:3000",
            text.escape_debug()
        )
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(usage)?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_[]:".contains(&b));
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(usage());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, body: Option<&str>, headers: &[&str]) -> Request {
        Request {
            method: method.into(),
            target: "/work/search?work_code=api".into(),
            host: "127.0.0.1:3000".into(),
            headers: headers
                .iter()
                .map(|header| parse_header_field(header).expect("test headers are valid"))
                .collect(),
            body: body.map(|body| body.as_bytes().to_vec()),
        }
    }

    #[test]
    fn a_get_has_the_default_headers_and_no_length() {
        let bytes = encode_request(&request("GET", None, &[]));

        let expected = format!(
            "GET /work/search?work_code=api HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n\
             User-Agent: {USER_AGENT}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(String::from_utf8_lossy(&bytes), expected);
    }

    #[test]
    fn a_body_gets_its_length_and_json_by_default() {
        let bytes = encode_request(&request("POST", Some(r#"{"add_up_to":4}"#), &[]));

        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.contains("\r\nContent-Type: application/json\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nContent-Length: 15\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"add_up_to\":4}"), "{text}");
    }

    #[test]
    fn given_headers_replace_the_defaults() {
        let bytes = encode_request(&request(
            "PUT",
            Some("x"),
            &[
                "content-type: text/plain",
                "Accept: application/json",
                "X-A: b",
            ],
        ));

        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("application/json\r\nContent-Length"),
            "{text}"
        );
        assert!(!text.contains("*/*"), "{text}");
        assert!(text.contains("\r\ncontent-type: text/plain\r\n"), "{text}");
        assert!(text.contains("\r\nX-A: b\r\n"), "{text}");
    }

    #[test]
    fn a_post_without_body_says_its_length_is_zero() {
        let text =
            String::from_utf8_lossy(&encode_request(&request("POST", None, &[]))).into_owned();

        assert!(text.contains("\r\nContent-Length: 0\r\n"), "{text}");
        assert!(!text.contains("Content-Type"), "{text}");
    }

    #[test]
    fn bad_usage_is_refused() {
        let bad_methods = ["", "GE T", "GET\r\n", "GET/", "É"];
        for method in bad_methods {
            assert!(parse_method(method).is_err(), "method {method:?}");
        }
        let bad_targets = ["", "work", "/a b", "/a\r\nX: y", "/é", "http://host/"];
        for target in bad_targets {
            assert!(parse_target(target).is_err(), "target {target:?}");
        }
        let bad_headers = [
            "NoColon",
            ": empty name",
            "Bad Name: v",
            "X: a\r\nInjected: yes",
            "X: a\nb",
            "X: \0",
            "Content-Length: 5",
            "connection: keep-alive",
            "Transfer-Encoding: chunked",
        ];
        for header in bad_headers {
            assert!(parse_header_field(header).is_err(), "header {header:?}");
        }
        for addr in ["127.0.0.1", ":3000", "host:port", "a b:1", "host:70000"] {
            assert!(parse_addr(addr).is_err(), "addr {addr:?}");
        }
    }

    #[test]
    fn good_usage_is_accepted() {
        assert_eq!(parse_method("PURGE"), Ok("PURGE".into()));
        assert!(parse_target("/work/search?work_code=a%20b&x=~").is_ok());
        assert_eq!(
            parse_header_field("X-Trace:\t a b \t"),
            Ok(HeaderField {
                name: "X-Trace".into(),
                value: "a b".into()
            })
        );
        assert!(parse_header_field("X-Empty:").is_ok());
        for addr in ["127.0.0.1:3000", "localhost:80", "[::1]:3000"] {
            assert_eq!(parse_addr(addr), Ok(addr.to_owned()));
        }
    }
}
