//! What the user sees: the status line and the body, or with `--raw` the bytes on the wire.
//!
//! A JSON body is re-indented rather than re-serialised: its keys keep their order and its
//! numbers their spelling, which a round trip through `serde_json::Value` would not promise.

use std::io::{self, Write};

use crate::{client::Transcript, response::Response};

/// Prints `HTTP/1.1 200 OK`, then the body: indented if it is JSON, else as text (bytes outside
/// UTF-8 replaced).
pub fn write_response(out: &mut impl Write, response: &Response) -> io::Result<()> {
    writeln!(out, "{}", response.status_line())?;
    if response.body.is_empty() {
        return Ok(());
    }
    if is_json(response)
        && let Some(pretty) = reindent_json(&response.body)
    {
        return writeln!(out, "{pretty}");
    }
    let text = String::from_utf8_lossy(&response.body);
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        writeln!(out)?;
    }
    Ok(())
}

/// `--raw`: the bytes sent go to `err` between two marker lines, so that `out` holds exactly the
/// bytes received and nothing else (`cli_02 --raw > response.bin`).
pub fn write_raw(
    out: &mut impl Write,
    err: &mut impl Write,
    transcript: &Transcript,
) -> io::Result<()> {
    writeln!(err, "cli_02: sent {} bytes:", transcript.sent.len())?;
    err.write_all(&transcript.sent)?;
    if !transcript.sent.ends_with(b"\n") {
        writeln!(err)?;
    }
    writeln!(
        err,
        "cli_02: received {} bytes, on stdout",
        transcript.received.len()
    )?;
    out.write_all(&transcript.received)?;
    out.flush()
}

/// `application/json` or a `+json` type such as `application/problem+json`.
fn is_json(response: &Response) -> bool {
    let Some(content_type) = response.header("content-type") else {
        return false;
    };
    let media_type = content_type
        .split(|&byte| byte == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii()
        .to_ascii_lowercase();
    media_type == b"application/json" || media_type.ends_with(b"+json")
}

/// Indents valid JSON by two spaces per level; `None` if it is not JSON.
fn reindent_json(body: &[u8]) -> Option<String> {
    // Validate first (serde_json also bounds the nesting): the walk below trusts the structure.
    serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let text = std::str::from_utf8(body).ok()?;
    let mut pretty = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            pretty.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                pretty.push(c);
            }
            '{' | '[' => {
                pretty.push(c);
                while chars.next_if(char::is_ascii_whitespace).is_some() {}
                match chars.next_if(|&next| next == '}' || next == ']') {
                    Some(close) => pretty.push(close),
                    None => {
                        depth += 1;
                        new_line(&mut pretty, depth);
                    }
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                new_line(&mut pretty, depth);
                pretty.push(c);
            }
            ',' => {
                pretty.push(c);
                new_line(&mut pretty, depth);
            }
            ':' => pretty.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => pretty.push(c),
        }
    }
    Some(pretty)
}

fn new_line(pretty: &mut String, depth: usize) {
    pretty.push('\n');
    pretty.extend(std::iter::repeat_n("  ", depth));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_indented_keeping_key_order_and_number_spelling() {
        let body =
            br#" {"z":1, "a":[1.50, {}, [ ], "x,\"y\":{"], "big":123456789012345678901234567890} "#;

        let pretty = reindent_json(body);

        let expected = r#"{
  "z": 1,
  "a": [
    1.50,
    {},
    [],
    "x,\"y\":{"
  ],
  "big": 123456789012345678901234567890
}"#;
        assert_eq!(pretty.as_deref(), Some(expected));
    }

    #[test]
    fn not_json_is_left_alone() {
        for body in [&b"{"[..], b"hello", b"{\"a\":1} trailing", b"\xff"] {
            assert_eq!(reindent_json(body), None, "{body:?}");
        }
    }

    #[test]
    fn scalars_stay_on_one_line() {
        assert_eq!(reindent_json(b" \"text\" ").as_deref(), Some("\"text\""));
        assert_eq!(reindent_json(b"42").as_deref(), Some("42"));
    }
}
