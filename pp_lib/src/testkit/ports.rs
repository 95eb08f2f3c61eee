//! Ports for tests that run side by side, without racing each other for one.
//!
//! A port bound and released at once (the usual "free port" trick) is free only for a moment:
//! the kernel hands the same port to the next socket of the parallel suite that binds port 0,
//! or that connects out. So:
//! - a port that must refuse is [`closed_port`]: a socket bound to `127.0.0.1:0` that never
//!   listens, held as long as the test holds the value. Connections to it are refused, and no
//!   one else can bind it meanwhile.
//! - a server a test starts binds port 0 itself and reports the port it got, where it can.
//! - a program that must be told its port (a RabbitMQ node, chromedriver, an API the fault run
//!   restarts on the same address) is given a [`reserve_port`]: a port outside the kernel's
//!   ephemeral range (which port 0 and outgoing connections draw from, so no socket of the suite
//!   is given it by chance), locked for the reservation's life by a lock file every test
//!   process respects, and bindable when reserved. A program that is not the suite's may still
//!   take it before the program binds it: the starters retry on another port then
//!   ([`PORT_ATTEMPTS`]), and say so when they give up.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;

/// How many ports a starter tries before it gives up on a program whose port was taken.
pub const PORT_ATTEMPTS: usize = 5;

/// The lowest port ever reserved: below it sit many services' well-known ports.
const LOWEST_RESERVED: u16 = 10_000;

/// A port of 127.0.0.1 that refuses connections as long as this value lives: a socket is bound
/// to it and never listens, so no one else can bind it meanwhile. It reads as its address.
#[derive(Debug)]
pub struct ClosedPort {
    /// Held, never listened on: it keeps the port.
    _socket: tokio::net::TcpSocket,
    addr: SocketAddr,
}

impl ClosedPort {
    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl std::fmt::Display for ClosedPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// An address nothing listens on, and nothing will while the value lives (for a client to be
/// refused by).
pub fn closed_port() -> ClosedPort {
    // Without SO_REUSEADDR (which a TcpSocket does not set unless asked), no other socket can
    // bind the port, listening or not.
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("a port of 127.0.0.1");
    let addr = socket.local_addr().expect("a bound socket's address");
    ClosedPort {
        _socket: socket,
        addr,
    }
}

/// A port reserved for a program the test starts and must tell its port: no other test of any
/// process is given it while the value lives. The port itself is free for the program to bind.
#[derive(Debug)]
pub struct PortReservation {
    port: u16,
    lock: PathBuf,
    /// Locked (flock) while the reservation lives.
    _file: File,
}

impl PortReservation {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        // Removed while still locked: whoever opened the file meanwhile finds, once it locks it,
        // that the path names another file (or none) and tries another port.
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// Reserves a port outside the ephemeral range, bindable now on every address of this machine.
pub fn reserve_port() -> PortReservation {
    use rand::Rng;
    let range = reservable_range(ephemeral_range());
    let dir = std::env::temp_dir().join("pp-test-ports");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    let mut rng = rand::rng();
    for _ in 0..10_000 {
        let port = rng.random_range(range.clone());
        if let Some(reservation) = try_reserve(&dir, port) {
            return reservation;
        }
    }
    panic!("no port left to reserve in {range:?}: every one is taken or reserved");
}

/// The port reserved when its lock is ours and nothing is bound to it.
fn try_reserve(dir: &std::path::Path, port: u16) -> Option<PortReservation> {
    use std::os::unix::fs::MetadataExt;
    let lock = dir.join(port.to_string());
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .ok()?;
    file.try_lock().ok()?;
    // The holder before may have removed the file between our open and our lock.
    let same = std::fs::metadata(&lock)
        .ok()
        .zip(file.metadata().ok())
        .is_some_and(|(path, held)| path.ino() == held.ino() && path.dev() == held.dev());
    if !same {
        return None;
    }
    let reservation = PortReservation {
        port,
        lock,
        _file: file,
    };
    // The wildcard address clashes with a socket bound to any IPv4 address of the machine;
    // some programs (chromedriver) bind [::1] too. A machine without IPv6 cannot bind it at all.
    let v4 = std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)));
    let v6 = std::net::TcpListener::bind(SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)));
    let v6_taken = v6.is_err_and(|error| error.kind() == std::io::ErrorKind::AddrInUse);
    (v4.is_ok() && !v6_taken).then_some(reservation)
}

/// The kernel's ephemeral ports (what port 0 and outgoing connections get), as Linux says.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut bounds = text.split_whitespace().map(str::parse::<u16>);
            Some((bounds.next()?.ok()?, bounds.next()?.ok()?))
        })
        // Linux's default.
        .unwrap_or((32_768, 60_999))
}

/// Where reservations are drawn from: the larger stretch outside the ephemeral range, above the
/// well-known ports (all of them above it when the ephemeral range covers everything).
fn reservable_range((low, high): (u16, u16)) -> std::ops::Range<u16> {
    let below = LOWEST_RESERVED..low.max(LOWEST_RESERVED);
    let above = high.saturating_add(1).max(LOWEST_RESERVED)..u16::MAX;
    match (below.len(), above.len()) {
        (0, 0) => LOWEST_RESERVED..u16::MAX,
        (b, a) if b >= a => below,
        _ => above,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_refuses_and_cannot_be_bound_while_held() {
        let closed = closed_port();

        let connected = std::net::TcpStream::connect(closed.addr());
        let bound = std::net::TcpListener::bind(closed.addr());

        assert_eq!(
            connected.expect_err("refused").kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        assert!(bound.is_err(), "the port is held");
    }

    #[test]
    fn a_reserved_port_is_outside_the_ephemeral_range_and_reserved_once() {
        let (low, high) = ephemeral_range();
        let reservations: Vec<PortReservation> = (0..50).map(|_| reserve_port()).collect();

        let mut ports: Vec<u16> = reservations.iter().map(PortReservation::port).collect();
        assert!(
            ports.iter().all(|port| !(low..=high).contains(port)),
            "{ports:?} against {low}..={high}"
        );
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 50, "no port reserved twice");
        for reservation in &reservations {
            std::net::TcpListener::bind(("127.0.0.1", reservation.port()))
                .expect("a reserved port is free to bind");
        }
    }

    #[test]
    fn a_port_reserved_elsewhere_is_not_reserved_again_until_released() {
        let dir = std::env::temp_dir().join("pp-test-ports");
        let held = reserve_port();

        assert!(try_reserve(&dir, held.port()).is_none(), "reserved already");
        let port = held.port();
        drop(held);
        let again = try_reserve(&dir, port);
        assert!(
            again.is_some_and(|reservation| reservation.port() == port),
            "released"
        );
    }

    #[test]
    fn a_bound_port_is_not_reserved() {
        let dir = std::env::temp_dir().join("pp-test-ports");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("bound").port();

        assert!(try_reserve(&dir, port).is_none());
    }

    #[test]
    fn reservations_come_from_the_larger_stretch_outside_the_ephemeral_range() {
        assert_eq!(reservable_range((32_768, 60_999)), 10_000..32_768);
        assert_eq!(reservable_range((1_024, 40_000)), 40_001..u16::MAX);
        assert_eq!(reservable_range((1_024, 65_535)), 10_000..u16::MAX);
    }
}
