//! The front door: every HTTP/1 connection's bytes pass through a [`FrontDoor`] before actix
//! reads them, so that what actix would refuse below pp's handlers is answered by pp.
//!
//! actix's HTTP/1 decoder refuses some requests before any handler runs, with a bare `400` (no
//! body, no request id, nothing in the access log, no metric): an HTTP/1.0 `POST` without
//! `Content-Length` (what nginx sends upstream by default for a bodyless `POST`), a malformed
//! request line or header, an HTTP/1.1 request without `Host`, contradictory lengths, a head
//! over its limits. The front door reads each request's head first (with the parser actix uses,
//! `httparse`) and:
//!
//! - gives an HTTP/1.0 `POST` without a length `Content-Length: 0`: with no length and no
//!   chunked coding, HTTP/1.0 has no way to send a body but to close the connection after it,
//!   which no client of pp does; it is then answered as the same request over HTTP/1.1 is;
//! - replaces a head actix would refuse with a request of its own to [`REFUSED_PATH`], carrying
//!   why, and swallows whatever the client sends after it; that route answers with pp's JSON
//!   error (400, or 431 for a head too large), and the request is logged, counted and given a
//!   request id like any other. The route answers only requests made by this process's front
//!   door (they carry a random secret); from anyone else it is a 404 like any unknown path;
//! - passes everything else through untouched.
//!
//! It reads every head while the client speaks HTTP/1.0, and the first one of an HTTP/1.1
//! connection; after one well-formed HTTP/1.1 request (or a chunked body, whose framing it does
//! not follow) it only passes bytes through, so a keep-alive client pays for one parse per
//! connection.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use prometheus::IntCounterVec;

use crate::error::{ErrorBody, ErrorResponse, not_found};

/// Where the front door sends a request it refuses; served only to the front door's own.
pub const REFUSED_PATH: &str = "/_pp/front-door/refused";

/// The header carrying the front door's secret on the requests it makes.
const SECRET_HEADER: &str = "x-pp-front-door";
/// The header saying why the front door refused.
const REASON_HEADER: &str = "x-pp-refusal";
/// The header with the refusal's detail (the parser's words).
const DETAIL_HEADER: &str = "x-pp-refusal-detail";

/// The longest head actix reads (its decoder's buffer limit).
pub const MAX_HEAD_BYTES: usize = 131_072;
/// The most headers actix parses in one request.
pub const MAX_HEADERS: usize = 96;

/// Why a request was refused, or mended, before any handler: the metric's label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The request line or a header is not HTTP.
    Malformed,
    /// An HTTP/1.1 request without `Host`.
    MissingHost,
    /// A `Content-Length` that is not a number, two that differ, both a length and
    /// `Transfer-Encoding`, a coding that is not chunked, or `Transfer-Encoding` in HTTP/1.0.
    BadLength,
    /// A head over [`MAX_HEAD_BYTES`] or with more than [`MAX_HEADERS`] headers.
    HeadersTooLarge,
    /// An HTTP/1.0 `POST` without a length, taken as empty (served, not refused).
    LengthAdded,
}

impl Framing {
    /// Every label, for the metric's help and for tests.
    pub const ALL: [Framing; 5] = [
        Framing::Malformed,
        Framing::MissingHost,
        Framing::BadLength,
        Framing::HeadersTooLarge,
        Framing::LengthAdded,
    ];

    /// As the metric and the refusal header name it.
    pub fn label(self) -> &'static str {
        match self {
            Framing::Malformed => "malformed",
            Framing::MissingHost => "missing_host",
            Framing::BadLength => "bad_length",
            Framing::HeadersTooLarge => "headers_too_large",
            Framing::LengthAdded => "length_added",
        }
    }

    fn from_label(label: &str) -> Option<Framing> {
        Framing::ALL
            .into_iter()
            .find(|framing| framing.label() == label)
    }
}

/// What every connection's front door shares: the secret its refusals carry, and the counter
/// of what it refused or mended, by [`Framing::label`].
#[derive(Clone)]
pub struct FrontDoors {
    secret: Arc<str>,
    counted: IntCounterVec,
}

impl FrontDoors {
    /// Front doors with a fresh random secret, counting in `counted` (a `reason` label).
    pub fn new(counted: IntCounterVec) -> FrontDoors {
        let secret: String = (0..32)
            .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)]))
            .collect();
        for framing in Framing::ALL {
            // Every reason shows on /metrics from the start, at zero.
            counted.with_label_values(&[framing.label()]);
        }
        FrontDoors {
            secret: secret.into(),
            counted,
        }
    }

    /// The front door of one connection.
    pub fn open<S>(&self, io: S) -> FrontDoor<S> {
        FrontDoor {
            io,
            head: BytesMut::new(),
            ready: BytesMut::new(),
            phase: Phase::Head,
            doors: self.clone(),
        }
    }

    /// Whether `request` was made by a front door of this process.
    fn made(&self, request: &HttpRequest) -> bool {
        request
            .headers()
            .get(SECRET_HEADER)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), self.secret.as_bytes()))
    }
}

impl std::fmt::Debug for FrontDoors {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("FrontDoors { secret: <redacted> }")
    }
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |differ, (a, b)| differ | (a ^ b))
            == 0
}

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a request's head.
    Head,
    /// Passing on this many more bytes of a body, then a head again.
    Body(u64),
    /// Passing everything on, unread.
    Through,
    /// Refused: reading and dropping whatever the client still sends.
    Swallow,
}

/// One connection's front door: reads from `io` what actix reads, checked; writes go straight
/// through.
pub struct FrontDoor<S> {
    io: S,
    /// A head read in part, and whatever came after it.
    head: BytesMut,
    /// Checked bytes actix has not read yet.
    ready: BytesMut,
    phase: Phase,
    doors: FrontDoors,
}

/// What a complete head asks of the front door.
enum Verdict {
    /// Pass it on as it is, then this phase.
    Pass(Phase),
    /// Pass it on with `Content-Length: 0` added.
    AddLength,
    /// Refuse it.
    Refuse(Framing, String),
}

impl<S> FrontDoor<S> {
    /// Looks at the head being read: hands over whatever can be handed over, and says whether
    /// more bytes are needed.
    fn examine(&mut self) {
        loop {
            match self.phase {
                Phase::Head if !self.head.is_empty() => {}
                Phase::Body(left) if !self.head.is_empty() => {
                    let take = usize::try_from(left)
                        .unwrap_or(usize::MAX)
                        .min(self.head.len());
                    self.ready.extend_from_slice(&self.head.split_to(take));
                    self.phase = match left - take as u64 {
                        0 => Phase::Head,
                        left => Phase::Body(left),
                    };
                    continue;
                }
                Phase::Through => {
                    self.ready.extend_from_slice(&self.head.split());
                    return;
                }
                Phase::Swallow => {
                    self.head.clear();
                    return;
                }
                _ => return,
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            let parsed = request.parse(&self.head);
            let (length, verdict) = match parsed {
                Ok(httparse::Status::Partial) if self.head.len() >= MAX_HEAD_BYTES => (
                    0,
                    Verdict::Refuse(
                        Framing::HeadersTooLarge,
                        format!("request head over {} KiB", MAX_HEAD_BYTES / 1024),
                    ),
                ),
                Ok(httparse::Status::Partial) => return,
                Ok(httparse::Status::Complete(length)) => (length, judge(&request)),
                Err(httparse::Error::TooManyHeaders) => (
                    0,
                    Verdict::Refuse(
                        Framing::HeadersTooLarge,
                        format!("more than {MAX_HEADERS} headers"),
                    ),
                ),
                Err(error) => (0, Verdict::Refuse(Framing::Malformed, error.to_string())),
            };
            match verdict {
                Verdict::Pass(next) => {
                    self.ready.extend_from_slice(&self.head.split_to(length));
                    self.phase = next;
                }
                Verdict::AddLength => {
                    self.count(Framing::LengthAdded);
                    // The head ends with an empty line: the header goes just before it.
                    let head = self.head.split_to(length);
                    let end = head.len() - line_end_length(&head);
                    self.ready.extend_from_slice(&head[..end]);
                    self.ready.extend_from_slice(b"content-length: 0\r\n");
                    self.ready.extend_from_slice(&head[end..]);
                    self.phase = Phase::Head;
                }
                Verdict::Refuse(framing, detail) => {
                    self.count(framing);
                    self.head.clear();
                    self.ready
                        .extend_from_slice(&self.refusal(framing, &detail));
                    self.phase = Phase::Swallow;
                    return;
                }
            }
        }
    }

    fn count(&self, framing: Framing) {
        self.doors
            .counted
            .with_label_values(&[framing.label()])
            .inc();
    }

    /// The request that stands for a refused one.
    fn refusal(&self, framing: Framing, detail: &str) -> Vec<u8> {
        let detail: String = detail
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .take(200)
            .collect();
        format!(
            "GET {REFUSED_PATH} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\
             {SECRET_HEADER}: {}\r\n{REASON_HEADER}: {}\r\n{DETAIL_HEADER}: {detail}\r\n\r\n",
            self.doors.secret,
            framing.label()
        )
        .into_bytes()
    }

    fn hand_over(&mut self, buf: &mut ReadBuf<'_>) {
        let take = self.ready.len().min(buf.remaining());
        buf.put_slice(&self.ready[..take]);
        self.ready.advance(take);
    }
}

/// The length of the empty line ending `head` (`\r\n`, or `\n` alone, which httparse accepts).
fn line_end_length(head: &[u8]) -> usize {
    if head.ends_with(b"\r\n") { 2 } else { 1 }
}

/// What a complete, well-formed head asks for, by actix's rules.
fn judge(request: &httparse::Request<'_, '_>) -> Verdict {
    let http10 = request.version == Some(0);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut host = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let Some(value) = std::str::from_utf8(header.value)
                .ok()
                .map(str::trim)
                .filter(|value| !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|value| value.parse::<u64>().ok())
            else {
                return Verdict::Refuse(
                    Framing::BadLength,
                    "Content-Length is not a number".into(),
                );
            };
            if length.is_some_and(|seen| seen != value) {
                return Verdict::Refuse(Framing::BadLength, "two different Content-Length".into());
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let is_chunked = std::str::from_utf8(header.value).is_ok_and(|value| {
                value
                    .split(',')
                    .next_back()
                    .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"))
            });
            chunked = Some(is_chunked);
        } else if header.name.eq_ignore_ascii_case("host") {
            host = true;
        }
    }
    if !http10 && !host {
        return Verdict::Refuse(
            Framing::MissingHost,
            "an HTTP/1.1 request needs a Host header".into(),
        );
    }
    match (chunked, length) {
        (Some(_), _) if http10 => Verdict::Refuse(
            Framing::BadLength,
            "Transfer-Encoding is not HTTP/1.0".into(),
        ),
        (Some(_), Some(_)) => Verdict::Refuse(
            Framing::BadLength,
            "both Content-Length and Transfer-Encoding".into(),
        ),
        (Some(false), None) => Verdict::Refuse(
            Framing::BadLength,
            "a Transfer-Encoding that does not end in chunked".into(),
        ),
        (Some(true), None) => Verdict::Pass(Phase::Through),
        (None, None) if http10 && request.method == Some("POST") => Verdict::AddLength,
        (None, length) => {
            let after = if http10 { Phase::Head } else { Phase::Through };
            match length {
                Some(0) | None => Verdict::Pass(after),
                // A body, then (over HTTP/1.0) the next head.
                Some(bytes) if http10 => Verdict::Pass(Phase::Body(bytes)),
                Some(_) => Verdict::Pass(Phase::Through),
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FrontDoor<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let door = self.get_mut();
        loop {
            if !door.ready.is_empty() {
                door.hand_over(buf);
                return Poll::Ready(Ok(()));
            }
            if door.phase == Phase::Through {
                return Pin::new(&mut door.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut door.io).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => {
                    // The client is done sending: a head it left unfinished is actix's to judge.
                    if door.phase != Phase::Swallow {
                        door.ready.extend_from_slice(&door.head.split());
                        door.hand_over(buf);
                    }
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(())) => {
                    door.head.extend_from_slice(read.filled());
                    door.examine();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FrontDoor<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// `GET` [`REFUSED_PATH`]: pp's answer to a request the front door refused (a 404, as for any
/// unknown path, to a request the front door did not make).
pub async fn refused(request: HttpRequest, doors: web::Data<FrontDoors>) -> HttpResponse {
    let framing = request
        .headers()
        .get(REASON_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(Framing::from_label);
    let (true, Some(framing)) = (doors.made(&request), framing) else {
        return not_found(request).await;
    };
    let detail = request
        .headers()
        .get(DETAIL_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let peer = request
        .peer_addr()
        .map_or_else(|| "an unknown peer".to_owned(), |peer| peer.to_string());
    log::warn!(
        "refused a request from {peer} before any handler: {} ({detail})",
        framing.label()
    );
    let (status, what) = match framing {
        Framing::HeadersTooLarge => (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request headers too large",
        ),
        Framing::MissingHost => (StatusCode::BAD_REQUEST, "missing Host header"),
        Framing::BadLength => (StatusCode::BAD_REQUEST, "the body's length is unclear"),
        Framing::Malformed | Framing::LengthAdded => (StatusCode::BAD_REQUEST, "malformed request"),
    };
    ErrorBody::response(status, format!("{what}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// What actix would read through a front door from a client that sent `sent` and closed.
    async fn through(sent: &[u8]) -> Vec<u8> {
        let counted = IntCounterVec::new(prometheus::Opts::new("framing", "test"), &["reason"])
            .expect("a counter");
        let doors = FrontDoors::new(counted);
        let mut door = doors.open(sent);
        let mut read = Vec::new();
        door.read_to_end(&mut read).await.expect("reading a slice");
        read
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[tokio::test]
    async fn a_bodyless_http10_post_gets_an_empty_length() {
        let read = through(b"POST /work HTTP/1.0\r\nHost: pp\r\n\r\n").await;
        assert_eq!(
            text(&read),
            "POST /work HTTP/1.0\r\nHost: pp\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn well_formed_requests_pass_untouched() {
        for sent in [
            &b"GET /work/1 HTTP/1.1\r\nHost: pp\r\n\r\nGET /work/2 HTTP/1.1\r\nHost: pp\r\n\r\n"[..],
            b"POST /work HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}GET /stats HTTP/1.0\r\n\r\n",
            b"POST /work HTTP/1.1\r\nHost: pp\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
            b"GET /work/1 HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(text(&through(sent).await), text(sent));
        }
    }

    #[tokio::test]
    async fn each_http10_head_is_read_a_body_apart() {
        let read = through(
            b"POST /work HTTP/1.0\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}\
              POST /work HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        )
        .await;
        assert!(
            text(&read).ends_with("Connection: keep-alive\r\ncontent-length: 0\r\n\r\n"),
            "{}",
            text(&read)
        );
    }

    #[tokio::test]
    async fn what_actix_refuses_becomes_a_request_for_the_refusal() {
        let cases: [(&[u8], Framing); 6] = [
            (b"GARBAGE\r\n\r\n", Framing::Malformed),
            (b"GET /work/1 HTTP/1.1\r\n\r\n", Framing::MissingHost),
            (b"POST /work HTTP/1.1\r\nHost: pp\r\nContent-Length: x\r\n\r\n", Framing::BadLength),
            (
                b"POST /work HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::BadLength,
            ),
            (
                b"POST /work HTTP/1.1\r\nHost: pp\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Framing::BadLength,
            ),
            (
                b"POST /work HTTP/1.1\r\nHost: pp\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
                Framing::BadLength,
            ),
        ];
        for (sent, framing) in cases {
            let read = text(&through(sent).await);
            assert!(
                read.starts_with(&format!("GET {REFUSED_PATH} HTTP/1.1\r\n")),
                "{read}"
            );
            assert!(
                read.contains(&format!("{REASON_HEADER}: {}\r\n", framing.label())),
                "{read}"
            );
        }
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused_and_the_rest_swallowed() {
        let mut sent = b"GET /work/1 HTTP/1.1\r\nHost: pp\r\n".to_vec();
        while sent.len() <= MAX_HEAD_BYTES {
            sent.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        let read = text(&through(&sent).await);
        assert!(read.contains("x-pp-refusal: headers_too_large"), "{read}");
        assert!(!read.contains("X-Filler"), "{read}");
        let mut many = b"GET /work/1 HTTP/1.1\r\nHost: pp\r\n".to_vec();
        for n in 0..MAX_HEADERS {
            many.extend_from_slice(format!("X-{n}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let read = text(&through(&many).await);
        assert!(read.contains("x-pp-refusal: headers_too_large"), "{read}");
    }

    #[tokio::test]
    async fn after_one_good_http11_request_bytes_pass_unread() {
        let sent = b"GET /work/1 HTTP/1.1\r\nHost: pp\r\n\r\nGARBAGE\r\n\r\n";
        assert_eq!(text(&through(sent).await), text(sent));
    }

    #[tokio::test]
    async fn a_head_cut_short_is_handed_over_as_it_is() {
        let sent = b"GET /work/1 HTTP/1.1\r\nHost: p";
        assert_eq!(text(&through(sent).await), text(sent));
    }

    #[test]
    fn only_the_secret_matches() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
