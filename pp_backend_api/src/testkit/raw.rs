//! An HTTP answer as a client that reads the bytes sees it (raw TCP, curl's `-i`): for the tests
//! that send what no client library would, or go through a proxy with a program of its own.

use serde_json::Value;

/// An answer: its status, its head (lower-cased) and its body.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    /// The status line and the headers, lower-cased.
    pub headers: String,
    pub body: String,
}

impl RawAnswer {
    /// The answer in `text` (a head, an empty line, a body); panics, saying what came, when it
    /// is not one.
    pub fn parse(text: &str) -> RawAnswer {
        let (headers, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
        let status = headers
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {headers}"));
        RawAnswer {
            status,
            headers: headers.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    /// The body, as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {self:?}"))
    }

    /// Whether the head has the header `name` (lower-case).
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The first value of the header `name` (lower-case), lower-cased.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(str::trim)
        })
    }
}
