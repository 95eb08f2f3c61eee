//! The exchange over TCP: resolve, connect, write the request, read until the parser is satisfied.
//!
//! Shaped like mini-redis `connection.rs`: a [`Connection`] owns the stream and a buffer, and
//! [`Connection::read_response`] loops "parse if complete, else read more". A clean EOF (a read
//! of 0 bytes) is handed to the parser, which knows whether the response may end there; a reset
//! is an error of its own.
//!
//! One deadline bounds everything: name resolution, connecting, each write and each read get
//! whatever time is left of `--timeout`, so a server that trickles one byte a second cannot
//! stretch the exchange. Memory is bounded by the parser, which refuses a response as soon as it
//! outgrows its limits.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    sync::mpsc::{self, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use crate::{
    error::{Error, Stage},
    response::{Parse, Response, parse_closed, parse_response},
};

/// How much one read asks for: large enough that a big body takes few reads (the parser looks
/// at the whole buffer after each).
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// The bytes that went over the wire, for `--raw`; filled as the exchange goes, so they are
/// there even when it fails.
#[derive(Debug, Default)]
pub struct Transcript {
    pub sent: Vec<u8>,
    pub received: Vec<u8>,
}

/// Sends `request` to `addr` and reads the response to it; `method` tells the parser whether a
/// body may follow.
pub fn exchange(
    addr: &str,
    request: &[u8],
    method: &str,
    timeout: Duration,
    transcript: &mut Transcript,
) -> Result<Response, Error> {
    let deadline = Deadline::after(timeout);
    let candidates = resolve(addr, deadline)?;
    let mut connection = Connection::connect(addr, &candidates, deadline)?;
    let written = connection.write_request(request, transcript);
    // A server may answer and close before it has read the whole request (a 413, say): that
    // answer is worth showing, so a failed write is reported only if no response follows.
    let response = connection.read_response(method);
    transcript.received = connection.buffer;
    match (written, response) {
        (Ok(()), response) | (Err(_), response @ Ok(_)) => response,
        (Err(write_error), Err(_)) => Err(write_error),
    }
}

/// When the whole exchange must be over.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    /// The `--timeout` it came from, for the error message.
    timeout: Duration,
}

impl Deadline {
    fn after(timeout: Duration) -> Self {
        Self {
            at: Instant::now() + timeout,
            timeout,
        }
    }

    /// The time left for the next step; never zero, which the socket options would refuse.
    fn remaining(&self, stage: Stage) -> Result<Duration, Error> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(self.expired(stage))
        } else {
            Ok(left)
        }
    }

    fn expired(&self, stage: Stage) -> Error {
        Error::Timeout {
            stage,
            timeout: self.timeout,
        }
    }
}

/// The addresses `addr` names. The system resolver cannot be given a timeout, so a lookup runs
/// on its own thread, abandoned if the deadline passes first.
fn resolve(addr: &str, deadline: Deadline) -> Result<Vec<SocketAddr>, Error> {
    if let Ok(literal) = addr.parse::<SocketAddr>() {
        return Ok(vec![literal]);
    }
    let (sender, receiver) = mpsc::channel();
    let name = addr.to_owned();
    thread::spawn(move || {
        let found = name.to_socket_addrs().map(Iterator::collect::<Vec<_>>);
        // The receiver is gone only if the deadline passed: nobody wants the answer.
        let _ = sender.send(found);
    });
    let resolve_error = |source| Error::Resolve {
        addr: addr.to_owned(),
        source,
    };
    match receiver.recv_timeout(deadline.remaining(Stage::Resolving)?) {
        Ok(Ok(found)) if found.is_empty() => Err(Error::NoAddress {
            addr: addr.to_owned(),
        }),
        Ok(Ok(found)) => Ok(found),
        Ok(Err(source)) => Err(resolve_error(source)),
        Err(RecvTimeoutError::Timeout) => Err(deadline.expired(Stage::Resolving)),
        Err(RecvTimeoutError::Disconnected) => {
            Err(resolve_error(io::Error::other("the lookup thread stopped")))
        }
    }
}

/// A connected stream and everything read from it so far.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    buffer: Vec<u8>,
    deadline: Deadline,
}

impl Connection {
    /// Connects to the first candidate that accepts.
    fn connect(addr: &str, candidates: &[SocketAddr], deadline: Deadline) -> Result<Self, Error> {
        let mut failure = Error::NoAddress {
            addr: addr.to_owned(),
        };
        for candidate in candidates {
            let left = deadline.remaining(Stage::Connecting)?;
            match TcpStream::connect_timeout(candidate, left) {
                Ok(stream) => {
                    return Ok(Self {
                        stream,
                        buffer: Vec::new(),
                        deadline,
                    });
                }
                Err(error) if is_timeout(&error) => failure = deadline.expired(Stage::Connecting),
                Err(source) => {
                    failure = Error::Connect {
                        addr: candidate.to_string(),
                        source,
                    }
                }
            }
        }
        Err(failure)
    }

    /// Writes the whole request, each write bounded by the time left; records what went out.
    fn write_request(&mut self, request: &[u8], transcript: &mut Transcript) -> Result<(), Error> {
        let stage = Stage::Sending;
        let mut rest = request;
        while !rest.is_empty() {
            let left = self.deadline.remaining(stage)?;
            self.stream
                .set_write_timeout(Some(left))
                .map_err(|source| Error::Io { stage, source })?;
            match self.stream.write(rest) {
                Ok(0) => {
                    let source = io::Error::from(io::ErrorKind::WriteZero);
                    return Err(Error::Io { stage, source });
                }
                Ok(written) => {
                    transcript.sent.extend_from_slice(&rest[..written]);
                    rest = &rest[written..];
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.failed(error, stage)),
            }
        }
        Ok(())
    }

    /// Reads until the parser has a whole response, or refuses the bytes.
    fn read_response(&mut self, method: &str) -> Result<Response, Error> {
        let mut chunk = vec![0; READ_CHUNK_BYTES];
        loop {
            if let Parse::Complete(response, _) = parse_response(&self.buffer, false, method)? {
                return Ok(response);
            }
            let stage = if self.buffer.is_empty() {
                Stage::Waiting
            } else {
                Stage::Reading
            };
            let left = self.deadline.remaining(stage)?;
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|source| Error::Io { stage, source })?;
            match self.stream.read(&mut chunk) {
                // A clean close: the parser says whether the response may end here.
                Ok(0) => return Ok(parse_closed(&self.buffer, method)?.0),
                Ok(read) => self.buffer.extend_from_slice(&chunk[..read]),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(self.failed(error, stage)),
            }
        }
    }

    fn failed(&self, error: io::Error, stage: Stage) -> Error {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match error.kind() {
            _ if is_timeout(&error) => self.deadline.expired(stage),
            ConnectionReset | ConnectionAborted | BrokenPipe => Error::Reset { stage },
            _ => Error::Io {
                stage,
                source: error,
            },
        }
    }
}

/// A socket timeout shows as `WouldBlock` on Unix and `TimedOut` on Windows.
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
