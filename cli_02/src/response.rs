//! The HTTP/1.1 response parser: a pure function over the bytes received so far.
//!
//! [`parse_response`] looks at everything read from the socket and answers either
//! [`Parse::Incomplete`] ("read more and call me again") or [`Parse::Complete`] with the response
//! and how many bytes it took, or a [`ResponseError`]. It keeps no state between calls, so the
//! client loop is "parse if complete, else read more" (mini-redis `connection.rs`), and tests can
//! feed it any bytes, split anywhere.
//!
//! It is written to be *prefix-consistent*: lines are judged only once their terminator has
//! arrived, and every limit is checked in the order the bytes come. So a verdict reached on a
//! prefix (an error, or a complete response) is the verdict on every longer input, and feeding the
//! bytes one at a time gives the same answer as feeding them at once (a property test checks it).
//!
//! Choices where RFC 9112 leaves room, each tested:
//!
//! - A line may end in CRLF or in a bare LF (RFC 9112 §2.2 allows recipients to accept LF); a bare
//!   CR anywhere else is rejected.
//! - Obsolete line folding (a field line starting with a space or tab) is rejected.
//! - Interim responses (1xx other than 101) are skipped, at most [`MAX_INTERIM_RESPONSES`].
//! - A response with both `Transfer-Encoding` and `Content-Length` is rejected: §6.3 says it
//!   "ought to be handled as an error", as it is how response splitting starts.
//! - The only transfer coding understood is `chunked` (the request asks for no other).
//! - Several `Content-Length` values are accepted only if they are all equal (§6.3).
//! - Responses to HEAD, and 1xx, 204 and 304 responses, have no body whatever their headers say.
//!
//! Every piece of a hostile response is bounded: the header section, the number of fields, a chunk
//! size line, the decoded body and the bytes spent on chunk framing. So is the memory the caller
//! needs: nothing outside these limits is ever asked for.

use std::fmt;

/// Most bytes in one header section (status line and fields) or one trailer section.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most field lines in one header section or one trailer section.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of a body, however it is framed.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Most bytes of one chunk size line, extensions included.
pub const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;
/// Most bytes spent on chunk framing (size lines and CRLFs): one-byte chunks must not let a
/// server make the client buffer several times the body limit.
pub const MAX_CHUNK_FRAMING_BYTES: usize = MAX_BODY_BYTES;
/// Most interim (1xx) responses skipped before the final one.
pub const MAX_INTERIM_RESPONSES: usize = 8;

/// What the parser made of the bytes so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// The response is not complete: read more bytes and parse again.
    Incomplete,
    /// The response, and how many bytes of the input it took (any further bytes are not part
    /// of it).
    Complete(Response, usize),
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub version: Version,
    /// Between 100 and 599.
    pub status: u16,
    /// The reason phrase, possibly empty; bytes outside UTF-8 are replaced.
    pub reason: String,
    pub headers: Vec<Field>,
    /// How the body was delimited: shown by `--raw` readers and checked by the tests.
    pub framing: Framing,
    /// The body, already decoded from the chunked coding when it was chunked.
    pub body: Vec<u8>,
    /// Fields sent after a chunked body.
    pub trailers: Vec<Field>,
}

impl Response {
    /// The value of the first field with this name (names are case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|field| field.name.eq_ignore_ascii_case(name))
            .map(|field| field.value.as_slice())
    }

    /// The status line as `HTTP/1.1 200 OK` (without the reason when there is none).
    pub fn status_line(&self) -> String {
        if self.reason.is_empty() {
            format!("{} {}", self.version, self.status)
        } else {
            format!("{} {} {}", self.version, self.status, self.reason)
        }
    }
}

/// The HTTP version of a response: only HTTP/1.x speaks this wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Http10 => "HTTP/1.0",
            Self::Http11 => "HTTP/1.1",
        })
    }
}

/// One header or trailer field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// A token, as received (compare without case).
    pub name: String,
    /// Without the surrounding whitespace; may hold bytes outside ASCII (obs-text).
    pub value: Vec<u8>,
}

/// How the end of the body was known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// HEAD, 1xx, 204, 304: no body whatever the headers say.
    NoBody,
    ContentLength(u64),
    Chunked,
    /// Neither length nor chunked: the body runs to the end of the connection.
    UntilClose,
}

/// Why the bytes are not an acceptable HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("the server closed the connection without sending anything")]
    Empty,
    #[error("the connection closed before the end of the response headers ({received} bytes)")]
    ClosedInHead { received: usize },
    #[error("the connection closed {received} bytes into a body of {expected} bytes")]
    ClosedInBody { expected: u64, received: usize },
    #[error("the connection closed before the end of the chunked body")]
    ClosedInChunkedBody,
    #[error("invalid status line `{0}`")]
    StatusLine(String),
    #[error("unsupported HTTP version `{0}`: only HTTP/1.0 and HTTP/1.1 are understood")]
    Version(String),
    #[error("status code {0} is outside 100..=599")]
    StatusCode(u16),
    #[error("a bare CR in the line `{0}`")]
    BareCr(String),
    #[error("the header section is larger than {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("obsolete line folding (a field line starting with whitespace): `{0}`")]
    ObsFold(String),
    #[error("invalid header line `{0}`")]
    HeaderLine(String),
    #[error("invalid header name `{0}`")]
    HeaderName(String),
    #[error("invalid value for header `{0}`")]
    HeaderValue(String),
    #[error("invalid Content-Length `{0}`")]
    ContentLength(String),
    #[error("several different Content-Length values")]
    ConflictingContentLengths,
    #[error("both Transfer-Encoding and Content-Length: refused, as RFC 9112 §6.3 advises")]
    LengthWithTransferEncoding,
    #[error("unsupported Transfer-Encoding `{0}`: only `chunked` is understood")]
    TransferEncoding(String),
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("invalid chunk size line `{0}`")]
    ChunkSize(String),
    #[error("a chunk size line longer than {MAX_CHUNK_LINE_BYTES} bytes")]
    ChunkLineTooLong,
    #[error("chunk framing larger than {MAX_CHUNK_FRAMING_BYTES} bytes")]
    ChunkFramingTooLarge,
    #[error("a chunk's data is not followed by CRLF")]
    ChunkMissingCrlf,
    #[error("more than {MAX_INTERIM_RESPONSES} interim (1xx) responses")]
    TooManyInterimResponses,
}

/// Parses the response to a request made with `method`, from the bytes received so far.
///
/// `at_eof` says the peer has closed the connection: nothing more will come. Then the answer is
/// never [`Parse::Incomplete`] (see [`parse_closed`]).
pub fn parse_response(buf: &[u8], at_eof: bool, method: &str) -> Result<Parse, ResponseError> {
    if at_eof {
        let (response, consumed) = parse_closed(buf, method)?;
        return Ok(Parse::Complete(response, consumed));
    }
    Ok(match parse_complete(buf, false, method)? {
        Some((response, consumed)) => Parse::Complete(response, consumed),
        None => Parse::Incomplete,
    })
}

/// Parses the response from all the bytes there will ever be: the peer has closed the
/// connection. A body that runs until close is complete; anything else unfinished is an error.
pub fn parse_closed(buf: &[u8], method: &str) -> Result<(Response, usize), ResponseError> {
    parse_complete(buf, true, method)?.ok_or_else(|| closed_early(buf, method))
}

/// Says where the input ended, once `parse_complete` found the bytes so far incomplete at EOF.
fn closed_early(buf: &[u8], method: &str) -> ResponseError {
    if buf.is_empty() {
        return ResponseError::Empty;
    }
    // Re-parse the heads alone to learn whether the end fell in a head or in a body. The first
    // call already accepted every complete line, so this finds no error.
    let mut start = 0;
    loop {
        let Ok(Some((head, body_start))) = parse_head(buf, start) else {
            return ResponseError::ClosedInHead {
                received: buf.len(),
            };
        };
        if is_interim(head.status) {
            start = body_start;
            continue;
        }
        return match body_framing(&head, method) {
            Ok(Framing::ContentLength(expected)) => ResponseError::ClosedInBody {
                expected,
                received: buf.len() - body_start,
            },
            _ => ResponseError::ClosedInChunkedBody,
        };
    }
}

/// The response, or `None` if more bytes are needed.
fn parse_complete(
    buf: &[u8],
    at_eof: bool,
    method: &str,
) -> Result<Option<(Response, usize)>, ResponseError> {
    let mut start = 0;
    let mut interim = 0;
    let (head, body_start) = loop {
        let Some((head, body_start)) = parse_head(buf, start)? else {
            return Ok(None);
        };
        if !is_interim(head.status) {
            break (head, body_start);
        }
        interim += 1;
        if interim > MAX_INTERIM_RESPONSES {
            return Err(ResponseError::TooManyInterimResponses);
        }
        start = body_start;
    };
    let framing = body_framing(&head, method)?;
    let (body, trailers, end) = match framing {
        Framing::NoBody => (Vec::new(), Vec::new(), body_start),
        Framing::ContentLength(length) => {
            // body_framing caps the length, so it fits in usize.
            let length = usize::try_from(length).map_err(|_| ResponseError::BodyTooLarge)?;
            let end = body_start + length;
            if buf.len() < end {
                return Ok(None);
            }
            (buf[body_start..end].to_vec(), Vec::new(), end)
        }
        Framing::Chunked => match parse_chunked(buf, body_start)? {
            Some(chunked) => chunked,
            None => return Ok(None),
        },
        Framing::UntilClose => {
            if buf.len() - body_start > MAX_BODY_BYTES {
                return Err(ResponseError::BodyTooLarge);
            }
            if !at_eof {
                return Ok(None);
            }
            (buf[body_start..].to_vec(), Vec::new(), buf.len())
        }
    };
    let response = Response {
        version: head.version,
        status: head.status,
        reason: head.reason,
        headers: head.fields,
        framing,
        body,
        trailers,
    };
    Ok(Some((response, end)))
}

/// 101 Switching Protocols is final: what follows is no longer HTTP.
fn is_interim(status: u16) -> bool {
    (100..200).contains(&status) && status != 101
}

/// A status line and its fields.
struct Head {
    version: Version,
    status: u16,
    reason: String,
    fields: Vec<Field>,
}

/// Parses the head starting at `start`: the head and where its body starts, or `None` if its
/// blank line has not arrived yet.
fn parse_head(buf: &[u8], start: usize) -> Result<Option<(Head, usize)>, ResponseError> {
    let Some((line, next)) = next_line(buf, start, head_limit(start))? else {
        return Ok(None);
    };
    let (version, status, reason) = parse_status_line(line)?;
    let Some((fields, body_start)) = parse_fields(buf, next, start)? else {
        return Ok(None);
    };
    let head = Head {
        version,
        status,
        reason,
        fields,
    };
    Ok(Some((head, body_start)))
}

/// Parses field lines from `pos` up to and including the blank line that ends them (a header
/// section begun at `section_start`, or a trailer section). `None` if the blank line has not
/// arrived yet.
fn parse_fields(
    buf: &[u8],
    mut pos: usize,
    section_start: usize,
) -> Result<Option<(Vec<Field>, usize)>, ResponseError> {
    let mut fields = Vec::new();
    loop {
        let Some((line, next)) = next_line(buf, pos, head_limit(section_start))? else {
            return Ok(None);
        };
        pos = next;
        if line.is_empty() {
            return Ok(Some((fields, pos)));
        }
        if fields.len() == MAX_HEADERS {
            return Err(ResponseError::TooManyHeaders);
        }
        fields.push(parse_field(line)?);
    }
}

/// The line starting at `pos` without its terminator (CRLF or LF), and where the next line
/// starts; `None` if its LF has not arrived. The bytes from `limit_start` through the LF must
/// not exceed `limit`, judged as soon as the bytes so far exceed it, LF or not: else `too_long`.
fn next_line(
    buf: &[u8],
    pos: usize,
    (limit_start, limit, too_long): (usize, usize, ResponseError),
) -> Result<Option<(&[u8], usize)>, ResponseError> {
    let Some(offset) = buf[pos..].iter().position(|&byte| byte == b'\n') else {
        return if buf.len() - limit_start > limit {
            Err(too_long)
        } else {
            Ok(None)
        };
    };
    let lf = pos + offset;
    if lf + 1 - limit_start > limit {
        return Err(too_long);
    }
    let line = &buf[pos..lf];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(ResponseError::BareCr(snippet(line)));
    }
    Ok(Some((line, lf + 1)))
}

/// The limit on a header or trailer section that starts at `start`.
fn head_limit(start: usize) -> (usize, usize, ResponseError) {
    (start, MAX_HEAD_BYTES, ResponseError::HeadTooLarge)
}

/// `HTTP/1.1 200 OK`; the reason phrase may be empty, and its space too (a common leniency).
fn parse_status_line(line: &[u8]) -> Result<(Version, u16, String), ResponseError> {
    let bad = || ResponseError::StatusLine(snippet(line));
    let (version, rest) = split_at_space(line);
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        other if other.starts_with(b"HTTP/") => {
            return Err(ResponseError::Version(snippet(other)));
        }
        _ => return Err(bad()),
    };
    let rest = rest.ok_or_else(bad)?;
    let (code, reason) = split_at_space(rest);
    let [a, b, c] = code else {
        return Err(bad());
    };
    if ![a, b, c].iter().all(|digit| digit.is_ascii_digit()) {
        return Err(bad());
    }
    let status = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    if !(100..=599).contains(&status) {
        return Err(ResponseError::StatusCode(status));
    }
    let reason = reason.unwrap_or_default();
    if !reason.iter().all(|&byte| is_field_byte(byte)) {
        return Err(bad());
    }
    Ok((
        version,
        status,
        String::from_utf8_lossy(reason).into_owned(),
    ))
}

/// Splits at the first space: before it, and after it if there was one.
fn split_at_space(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    match bytes.iter().position(|&byte| byte == b' ') {
        Some(space) => (&bytes[..space], Some(&bytes[space + 1..])),
        None => (bytes, None),
    }
}

/// `Name: value`, with optional whitespace around the value and none before the colon.
fn parse_field(line: &[u8]) -> Result<Field, ResponseError> {
    if line.starts_with(b" ") || line.starts_with(b"\t") {
        return Err(ResponseError::ObsFold(snippet(line)));
    }
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or_else(|| ResponseError::HeaderLine(snippet(line)))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if !is_token(name) {
        return Err(ResponseError::HeaderName(snippet(name)));
    }
    // A token is ASCII, so this never fails.
    let name = String::from_utf8_lossy(name).into_owned();
    let value = value.trim_ascii();
    if !value.iter().all(|&byte| is_field_byte(byte)) {
        return Err(ResponseError::HeaderValue(name));
    }
    Ok(Field {
        name,
        value: value.to_vec(),
    })
}

/// How the body of this final response is delimited (RFC 9112 §6.3).
fn body_framing(head: &Head, method: &str) -> Result<Framing, ResponseError> {
    let no_body = method == "HEAD"
        || head.status < 200
        || head.status == 204
        || head.status == 304
        || (method == "CONNECT" && (200..300).contains(&head.status));
    if no_body {
        return Ok(Framing::NoBody);
    }
    let named = |name: &'static str| {
        head.fields
            .iter()
            .filter(move |field| field.name.eq_ignore_ascii_case(name))
    };
    let has_length = named("content-length").next().is_some();
    let codings: Vec<&[u8]> = named("transfer-encoding")
        .flat_map(|field| field.value.split(|&byte| byte == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .collect();
    if named("transfer-encoding").next().is_some() {
        if has_length {
            return Err(ResponseError::LengthWithTransferEncoding);
        }
        return match codings.as_slice() {
            [coding] if coding.eq_ignore_ascii_case(b"chunked") => Ok(Framing::Chunked),
            _ => {
                let all: Vec<&[u8]> = named("transfer-encoding")
                    .map(|field| field.value.as_slice())
                    .collect();
                Err(ResponseError::TransferEncoding(snippet(
                    &all.join(&b", "[..]),
                )))
            }
        };
    }
    let mut length = None;
    for value in named("content-length").flat_map(|field| field.value.split(|&byte| byte == b',')) {
        let parsed = parse_content_length(value.trim_ascii())?;
        match length {
            Some(earlier) if earlier != parsed => {
                return Err(ResponseError::ConflictingContentLengths);
            }
            _ => length = Some(parsed),
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::ContentLength))
}

/// `1*DIGIT`, no sign, no space, at most [`MAX_BODY_BYTES`].
fn parse_content_length(value: &[u8]) -> Result<u64, ResponseError> {
    let bad = || ResponseError::ContentLength(snippet(value));
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let mut length: u64 = 0;
    for &digit in value {
        length = length
            .checked_mul(10)
            .and_then(|length| length.checked_add(u64::from(digit - b'0')))
            .ok_or(ResponseError::BodyTooLarge)?;
    }
    if length > MAX_BODY_BYTES as u64 {
        return Err(ResponseError::BodyTooLarge);
    }
    Ok(length)
}

/// A decoded chunked body, its trailers and where the message ends.
type Chunked = (Vec<u8>, Vec<Field>, usize);

/// Decodes `chunk-size [chunk-ext] CRLF chunk-data CRLF … 0 CRLF trailers CRLF` from `pos`;
/// `None` if it has not all arrived.
fn parse_chunked(buf: &[u8], mut pos: usize) -> Result<Option<Chunked>, ResponseError> {
    // The body is copied out only once it is complete: until then, only the framing is walked.
    let mut chunks = Vec::new();
    let mut decoded = 0usize;
    let mut framing = 0usize;
    loop {
        let Some((line, next)) = next_line(
            buf,
            pos,
            (pos, MAX_CHUNK_LINE_BYTES, ResponseError::ChunkLineTooLong),
        )?
        else {
            return Ok(None);
        };
        let size = parse_chunk_size(line)?;
        if size > MAX_BODY_BYTES - decoded {
            return Err(ResponseError::BodyTooLarge);
        }
        framing += next - pos;
        if framing > MAX_CHUNK_FRAMING_BYTES {
            return Err(ResponseError::ChunkFramingTooLarge);
        }
        pos = next;
        if size == 0 {
            let Some((trailers, end)) = parse_fields(buf, pos, pos)? else {
                return Ok(None);
            };
            let mut body = Vec::with_capacity(decoded);
            for &(start, end) in &chunks {
                body.extend_from_slice(&buf[start..end]);
            }
            return Ok(Some((body, trailers, end)));
        }
        let data_end = pos + size;
        // The CRLF after the data, or a bare LF: judged byte by byte as it arrives.
        let after = match buf.get(data_end..).unwrap_or_default() {
            [] | [b'\r'] => return Ok(None),
            [b'\n', ..] => data_end + 1,
            [b'\r', b'\n', ..] => data_end + 2,
            _ => return Err(ResponseError::ChunkMissingCrlf),
        };
        chunks.push((pos, data_end));
        decoded += size;
        framing += after - data_end;
        if framing > MAX_CHUNK_FRAMING_BYTES {
            return Err(ResponseError::ChunkFramingTooLarge);
        }
        pos = after;
    }
}

/// `1*HEXDIG` then, optionally, extensions (`;name=value`, ignored but checked for control
/// bytes). At most [`MAX_BODY_BYTES`], so it fits in usize.
fn parse_chunk_size(line: &[u8]) -> Result<usize, ResponseError> {
    let bad = || ResponseError::ChunkSize(snippet(line));
    let digits = line
        .iter()
        .take_while(|byte| byte.is_ascii_hexdigit())
        .count();
    if digits == 0 {
        return Err(bad());
    }
    let mut size: usize = 0;
    for &digit in &line[..digits] {
        // is_ascii_hexdigit above makes to_digit succeed.
        let value = char::from(digit).to_digit(16).ok_or_else(bad)?;
        size = size
            .checked_mul(16)
            .and_then(|size| size.checked_add(value as usize))
            .ok_or(ResponseError::BodyTooLarge)?;
    }
    let extensions = line[digits..].trim_ascii_start();
    let valid_extensions = extensions.is_empty()
        || (extensions.starts_with(b";") && extensions.iter().all(|&byte| is_field_byte(byte)));
    if !valid_extensions {
        return Err(bad());
    }
    Ok(size)
}

/// `tchar` of RFC 9110 §5.6.2, at least one.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte))
}

/// A byte allowed in a field value or reason phrase: HTAB, SP, VCHAR or obs-text.
pub(crate) fn is_field_byte(byte: u8) -> bool {
    byte == b'\t' || byte == b' ' || byte.is_ascii_graphic() || byte >= 0x80
}

/// A short, printable excerpt of hostile bytes for an error message.
fn snippet(bytes: &[u8]) -> String {
    const SHOWN: usize = 60;
    let shown = bytes.get(..SHOWN).unwrap_or(bytes);
    let mut text = shown.escape_ascii().to_string();
    if bytes.len() > SHOWN {
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a whole response to a GET, the connection closed after it.
    fn parse_all(bytes: &[u8]) -> Result<Parse, ResponseError> {
        parse_response(bytes, true, "GET")
    }

    fn complete(bytes: &[u8], method: &str) -> (Response, usize) {
        match parse_response(bytes, true, method) {
            Ok(Parse::Complete(response, consumed)) => (response, consumed),
            other => panic!("expected a complete response for {bytes:?}, got {other:?}"),
        }
    }

    /// What the client loop sees when the bytes trickle in one at a time.
    fn parse_byte_by_byte(bytes: &[u8], method: &str) -> Result<Parse, ResponseError> {
        for end in 0..=bytes.len() {
            let verdict = parse_response(&bytes[..end], false, method);
            if verdict != Ok(Parse::Incomplete) {
                return verdict;
            }
        }
        parse_response(bytes, true, method)
    }

    #[test]
    fn a_content_length_body_is_returned_and_later_bytes_are_not_consumed() {
        let bytes =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhelloEXTRA";

        let (response, consumed) = complete(bytes, "GET");

        assert_eq!(response.version, Version::Http11);
        assert_eq!(response.status, 200);
        assert_eq!(response.reason, "OK");
        assert_eq!(response.header("content-type"), Some(&b"text/plain"[..]));
        assert_eq!(response.framing, Framing::ContentLength(5));
        assert_eq!(response.body, b"hello");
        assert_eq!(consumed, bytes.len() - b"EXTRA".len());
    }

    #[test]
    fn a_content_length_body_is_complete_without_waiting_for_the_close() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

        let verdict = parse_response(bytes, false, "GET");

        assert!(matches!(verdict, Ok(Parse::Complete(_, 40))), "{verdict:?}");
    }

    #[test]
    fn content_length_zero_is_an_empty_body() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

        let (response, consumed) = complete(bytes, "GET");

        assert_eq!(response.body, b"");
        assert_eq!(consumed, bytes.len());
    }

    #[test]
    fn equal_repeated_content_lengths_are_accepted() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok";

        assert_eq!(complete(bytes, "GET").0.body, b"ok");
    }

    #[test]
    fn a_chunked_body_with_extensions_and_trailers_is_decoded() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n\
            5;name=value;flag\r\nhello\r\n\
            1 ; quoted=\"a b\"\r\n,\r\n\
            6\r\n world\r\n\
            0;last\r\nExpires: never\r\nX-Checksum: abc\r\n\r\n";

        let (response, consumed) = complete(bytes, "GET");

        assert_eq!(response.framing, Framing::Chunked);
        assert_eq!(response.body, b"hello, world");
        let trailers: Vec<_> = response.trailers.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(trailers, ["Expires", "X-Checksum"]);
        assert_eq!(consumed, bytes.len());
    }

    #[test]
    fn chunk_sizes_may_have_leading_zeros_and_either_case() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            000A\r\n0123456789\r\n0000000000000000000000000b\r\n0123456789a\r\n0\r\n\r\n";

        assert_eq!(complete(bytes, "GET").0.body.len(), 21);
    }

    #[test]
    fn lf_only_line_endings_are_accepted() {
        let bytes = b"HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n\
            3\nabc\n0\n\n";

        let (response, consumed) = complete(bytes, "GET");

        assert_eq!(response.body, b"abc");
        assert_eq!(consumed, bytes.len());
    }

    #[test]
    fn a_body_without_length_runs_until_the_close() {
        let bytes = b"HTTP/1.0 200 OK\r\n\r\nall of this";

        assert_eq!(parse_response(bytes, false, "GET"), Ok(Parse::Incomplete));
        let (response, consumed) = complete(bytes, "GET");
        assert_eq!(response.version, Version::Http10);
        assert_eq!(response.framing, Framing::UntilClose);
        assert_eq!(response.body, b"all of this");
        assert_eq!(consumed, bytes.len());
    }

    #[test]
    fn a_status_line_without_reason_is_accepted() {
        for bytes in [&b"HTTP/1.1 200\r\n\r\n"[..], b"HTTP/1.1 200 \r\n\r\n"] {
            let (response, _) = complete(bytes, "GET");
            assert_eq!(response.status_line(), "HTTP/1.1 200", "{bytes:?}");
        }
    }

    #[test]
    fn head_1xx_204_and_304_responses_have_no_body_whatever_their_headers_say() {
        let cases = [
            ("HEAD", "200 OK", "Content-Length: 5"),
            ("HEAD", "200 OK", "Transfer-Encoding: chunked"),
            ("GET", "204 No Content", "Content-Length: 5"),
            ("GET", "304 Not Modified", "Content-Length: 5"),
            ("GET", "101 Switching Protocols", "Upgrade: something"),
            ("CONNECT", "200 OK", "X: y"),
        ];
        for (method, status, header) in cases {
            let head = format!("HTTP/1.1 {status}\r\n{header}\r\n\r\n");
            let bytes = format!("{head}hello");

            let verdict = parse_response(bytes.as_bytes(), false, method);

            let Ok(Parse::Complete(response, consumed)) = verdict else {
                panic!("{method} {status}: {verdict:?}");
            };
            assert_eq!(response.framing, Framing::NoBody, "{method} {status}");
            assert_eq!(response.body, b"", "{method} {status}");
            assert_eq!(consumed, head.len(), "{method} {status}");
        }
    }

    #[test]
    fn interim_responses_are_skipped() {
        let bytes = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n\
            HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok";

        let (response, consumed) = complete(bytes, "POST");

        assert_eq!(response.status, 201);
        assert_eq!(response.body, b"ok");
        assert_eq!(consumed, bytes.len());
    }

    #[test]
    fn an_incomplete_head_asks_for_more() {
        for bytes in [
            &b""[..],
            b"HTTP/1.1 200 OK",
            b"HTTP/1.1 200 OK\r\nA: b\r\n",
            b"HTTP/1.1 200 OK\r\n\r",
        ] {
            assert_eq!(
                parse_response(bytes, false, "GET"),
                Ok(Parse::Incomplete),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn malformed_responses_are_rejected_with_the_reason() {
        use ResponseError as E;
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        let many_headers = format!(
            "HTTP/1.1 200 OK\r\n{}\r\n",
            "A: b\r\n".repeat(MAX_HEADERS + 1)
        );
        let long_chunk_line = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;{}\r\nx\r\n0\r\n\r\n",
            "e".repeat(MAX_CHUNK_LINE_BYTES)
        );
        let cases: Vec<(&str, Vec<u8>, ResponseError)> = vec![
            ("nothing at all", b"".to_vec(), E::Empty),
            ("not HTTP", b"SSH-2.0-OpenSSH\r\n".to_vec(), E::StatusLine("SSH-2.0-OpenSSH".into())),
            ("lowercase version", b"http/1.1 200 OK\r\n\r\n".to_vec(), E::StatusLine("http/1.1 200 OK".into())),
            ("HTTP/2", b"HTTP/2 200\r\n\r\n".to_vec(), E::Version("HTTP/2".into())),
            ("two spaces", b"HTTP/1.1  200 OK\r\n\r\n".to_vec(), E::StatusLine("HTTP/1.1  200 OK".into())),
            ("short code", b"HTTP/1.1 20 OK\r\n\r\n".to_vec(), E::StatusLine("HTTP/1.1 20 OK".into())),
            ("letters in code", b"HTTP/1.1 2x0 OK\r\n\r\n".to_vec(), E::StatusLine("HTTP/1.1 2x0 OK".into())),
            ("code too high", b"HTTP/1.1 600 Odd\r\n\r\n".to_vec(), E::StatusCode(600)),
            ("code too low", b"HTTP/1.1 099 Odd\r\n\r\n".to_vec(), E::StatusCode(99)),
            ("control byte in reason", b"HTTP/1.1 200 O\x00K\r\n\r\n".to_vec(), E::StatusLine("HTTP/1.1 200 O\\x00K".into())),
            ("bare CR", b"HTTP/1.1 200 OK\rX: y\r\n\r\n".to_vec(), E::BareCr("HTTP/1.1 200 OK\\rX: y".into())),
            ("obs-fold", b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n".to_vec(), E::ObsFold(" c".into())),
            ("no colon", b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n".to_vec(), E::HeaderLine("nocolon".into())),
            ("space before colon", b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n".to_vec(), E::HeaderName("A ".into())),
            ("empty name", b"HTTP/1.1 200 OK\r\n: b\r\n\r\n".to_vec(), E::HeaderName(String::new())),
            ("NUL in value", b"HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n".to_vec(), E::HeaderValue("A".into())),
            ("too many headers", many_headers.into_bytes(), E::TooManyHeaders),
            ("closed in the head", b"HTTP/1.1 200 OK\r\nA: b\r\n".to_vec(), E::ClosedInHead { received: 23 }),
            ("non-numeric length", b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n".to_vec(), E::ContentLength("ten".into())),
            ("negative length", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n".to_vec(), E::ContentLength("-1".into())),
            ("signed length", b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n".to_vec(), E::ContentLength("+1".into())),
            ("empty length", b"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n".to_vec(), E::ContentLength(String::new())),
            ("overflowing length", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(), E::BodyTooLarge),
            ("length over the cap", huge.into_bytes(), E::BodyTooLarge),
            ("different lengths", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), E::ConflictingContentLengths),
            ("different lengths in one field", b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab".to_vec(), E::ConflictingContentLengths),
            ("closed in the body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec(), E::ClosedInBody { expected: 10, received: 3 }),
            ("length and chunked", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), E::LengthWithTransferEncoding),
            ("gzip coding", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), E::TransferEncoding("gzip, chunked".into())),
            ("chunked twice", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), E::TransferEncoding("chunked, chunked".into())),
            ("non-hex chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), E::ChunkSize("zz".into())),
            ("negative chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n".to_vec(), E::ChunkSize("-1".into())),
            ("junk after chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n".to_vec(), E::ChunkSize("5 x".into())),
            ("empty chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n".to_vec(), E::ChunkSize(String::new())),
            ("overflowing chunk size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n".to_vec(), E::BodyTooLarge),
            ("chunk over the cap", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000001\r\n".to_vec(), E::BodyTooLarge),
            ("chunk longer than its size", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n".to_vec(), E::ChunkMissingCrlf),
            ("chunk data then CR junk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX".to_vec(), E::ChunkMissingCrlf),
            ("chunk line too long", long_chunk_line.into_bytes(), E::ChunkLineTooLong),
            ("closed in a chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab".to_vec(), E::ClosedInChunkedBody),
            ("closed before the last chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n".to_vec(), E::ClosedInChunkedBody),
            ("closed in the trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n".to_vec(), E::ClosedInChunkedBody),
            ("obs-fold in trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n\tc\r\n\r\n".to_vec(), E::ObsFold("\\tc".into())),
            ("too many interim responses", b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_RESPONSES + 1), E::TooManyInterimResponses),
        ];
        for (case, bytes, expected) in cases {
            assert_eq!(parse_all(&bytes), Err(expected.clone()), "{case}");
            assert_eq!(
                parse_byte_by_byte(&bytes, "GET"),
                Err(expected),
                "{case}, byte by byte"
            );
        }
    }

    #[test]
    fn an_oversized_head_is_refused_before_it_ends() {
        let mut bytes = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        bytes.resize(MAX_HEAD_BYTES, b'a');
        assert_eq!(parse_response(&bytes, false, "GET"), Ok(Parse::Incomplete));

        bytes.push(b'a');

        assert_eq!(
            parse_response(&bytes, false, "GET"),
            Err(ResponseError::HeadTooLarge)
        );
    }

    #[test]
    fn a_head_of_exactly_the_limit_is_accepted() {
        let mut bytes = b"HTTP/1.1 204 No Content\r\nX: ".to_vec();
        bytes.resize(MAX_HEAD_BYTES - 4, b'a');
        bytes.extend_from_slice(b"\r\n\r\n");

        assert_eq!(complete(&bytes, "GET").1, MAX_HEAD_BYTES);
    }

    #[test]
    fn an_endless_body_is_refused_at_the_cap() {
        let mut bytes = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let head = bytes.len();
        bytes.resize(head + MAX_BODY_BYTES, b'a');
        assert_eq!(parse_response(&bytes, false, "GET"), Ok(Parse::Incomplete));

        bytes.push(b'a');

        assert_eq!(
            parse_response(&bytes, false, "GET"),
            Err(ResponseError::BodyTooLarge)
        );
    }

    #[test]
    fn feeding_byte_by_byte_gives_the_same_result_as_all_at_once() {
        let samples: [&[u8]; 6] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\ngone",
            b"HTTP/1.1 200 OK\nContent-Length: 3\n\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\n\n",
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
        ];
        for bytes in samples {
            let at_once = parse_all(bytes);
            assert!(
                matches!(at_once, Ok(Parse::Complete(..))),
                "{bytes:?}: {at_once:?}"
            );
            assert_eq!(parse_byte_by_byte(bytes, "GET"), at_once, "{bytes:?}");
        }
    }
}

#[cfg(test)]
mod properties {
    //! Properties over generated input: no panics on any bytes, exact bodies for any valid
    //! response, and the same verdict wherever the input is split.

    use super::*;
    use proptest::prelude::*;

    /// Bytes likely to reach deep into the parser: pieces of responses mixed with noise.
    fn response_soup() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"HTTP/1.1 ".to_vec()),
            Just(b"HTTP/1.0 ".to_vec()),
            Just(b"200 OK".to_vec()),
            Just(b"100 Continue".to_vec()),
            Just(b"204".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"Content-Length: ".to_vec()),
            Just(b"Transfer-Encoding: chunked".to_vec()),
            Just(b"X-A: b".to_vec()),
            Just(b" ".to_vec()),
            Just(b";ext=1".to_vec()),
            Just(b":".to_vec()),
            "[0-9a-fA-F]{1,20}".prop_map(String::into_bytes),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    /// A valid response to a GET, and its body, headers and trailers as the parser must see them.
    #[derive(Debug, Clone)]
    struct Valid {
        bytes: Vec<u8>,
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        trailers: Vec<(String, String)>,
        until_close: bool,
    }

    #[derive(Debug, Clone)]
    enum Framed {
        Length,
        Chunked {
            cuts: Vec<usize>,
            upper: bool,
            extension: bool,
            trailers: Vec<(String, String)>,
        },
        UntilClose,
    }

    fn field() -> impl Strategy<Value = (String, String)> {
        ("X-[A-Za-z0-9-]{1,10}", "[!-~]([ -~]{0,20}[!-~])?|")
    }

    fn valid_response() -> impl Strategy<Value = Valid> {
        let status =
            (200u16..=599).prop_filter("no body by definition", |s| *s != 204 && *s != 304);
        let framed = prop_oneof![
            Just(Framed::Length),
            Just(Framed::UntilClose),
            (
                proptest::collection::vec(0usize..2000, 0..8),
                any::<bool>(),
                any::<bool>(),
                proptest::collection::vec(field(), 0..3),
            )
                .prop_map(|(cuts, upper, extension, trailers)| Framed::Chunked {
                    cuts,
                    upper,
                    extension,
                    trailers,
                }),
        ];
        (
            status,
            "[A-Za-z ]{0,12}",
            proptest::collection::vec(field(), 0..6),
            proptest::collection::vec(any::<u8>(), 0..2000),
            framed,
            any::<bool>(),
        )
            .prop_map(|(status, reason, headers, body, framed, lf_only)| {
                build_response(status, &reason, headers, body, framed, lf_only)
            })
    }

    fn build_response(
        status: u16,
        reason: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        framed: Framed,
        lf_only: bool,
    ) -> Valid {
        let eol = if lf_only { "\n" } else { "\r\n" };
        let mut head = format!("HTTP/1.1 {status} {reason}{eol}");
        for (name, value) in &headers {
            head.push_str(&format!("{name}: {value}{eol}"));
        }
        let mut all_headers = headers;
        let mut trailers_sent = Vec::new();
        let encoded = match &framed {
            Framed::Length => {
                head.push_str(&format!("Content-Length: {}{eol}", body.len()));
                all_headers.push(("Content-Length".into(), body.len().to_string()));
                body.clone()
            }
            Framed::UntilClose => body.clone(),
            Framed::Chunked {
                cuts,
                upper,
                extension,
                trailers,
            } => {
                head.push_str(&format!("Transfer-Encoding: chunked{eol}"));
                all_headers.push(("Transfer-Encoding".into(), "chunked".into()));
                let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (body.len() + 1)).collect();
                cuts.extend([0, body.len()]);
                cuts.sort_unstable();
                cuts.dedup();
                let mut encoded = Vec::new();
                for window in cuts.windows(2) {
                    let chunk = &body[window[0]..window[1]];
                    let size = if *upper {
                        format!("{:X}", chunk.len())
                    } else {
                        format!("{:x}", chunk.len())
                    };
                    let extension = if *extension { ";name=\"v\"" } else { "" };
                    encoded.extend_from_slice(format!("{size}{extension}{eol}").as_bytes());
                    encoded.extend_from_slice(chunk);
                    encoded.extend_from_slice(eol.as_bytes());
                }
                encoded.extend_from_slice(format!("0{eol}").as_bytes());
                for (name, value) in trailers {
                    encoded.extend_from_slice(format!("{name}: {value}{eol}").as_bytes());
                }
                encoded.extend_from_slice(eol.as_bytes());
                trailers_sent = trailers.clone();
                encoded
            }
        };
        head.push_str(eol);
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&encoded);
        Valid {
            bytes,
            status,
            headers: all_headers,
            body,
            trailers: trailers_sent,
            until_close: matches!(framed, Framed::UntilClose),
        }
    }

    fn fields(fields: &[Field]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    String::from_utf8_lossy(&f.value).into_owned(),
                )
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic_and_consume_at_most_what_was_given(
            bytes in prop_oneof![response_soup(), proptest::collection::vec(any::<u8>(), 0..512)],
            at_eof in any::<bool>(),
            head in any::<bool>(),
        ) {
            let method = if head { "HEAD" } else { "GET" };
            if let Ok(Parse::Complete(_, consumed)) = parse_response(&bytes, at_eof, method) {
                prop_assert!(consumed <= bytes.len());
            }
        }

        #[test]
        fn a_valid_response_parses_to_exactly_its_body(valid in valid_response()) {
            let verdict = parse_response(&valid.bytes, true, "GET");

            let Ok(Parse::Complete(response, consumed)) = verdict else {
                return Err(TestCaseError::fail(format!("{verdict:?}")));
            };
            prop_assert_eq!(response.status, valid.status);
            prop_assert_eq!(fields(&response.headers), valid.headers);
            prop_assert_eq!(&response.body, &valid.body);
            prop_assert_eq!(fields(&response.trailers), valid.trailers);
            prop_assert_eq!(consumed, valid.bytes.len());
            if !valid.until_close {
                let before_close = parse_response(&valid.bytes, false, "GET");
                prop_assert_eq!(before_close, Ok(Parse::Complete(response, consumed)));
            }
        }

        #[test]
        fn a_split_anywhere_gives_the_same_verdict(
            bytes in prop_oneof![
                response_soup(),
                valid_response().prop_map(|valid| valid.bytes),
            ],
            split in any::<prop::sample::Index>(),
        ) {
            let split = split.index(bytes.len() + 1);
            let whole = parse_response(&bytes, true, "GET");

            let first = parse_response(&bytes[..split], false, "GET");

            // A prefix either asks for more or already knows the whole input's verdict.
            if first != Ok(Parse::Incomplete) {
                prop_assert_eq!(first, whole);
            }
        }
    }
}
