//! A TCP forwarder on 127.0.0.1 that a test can cut (every connection closed, new ones refused)
//! and restore, or slow down: what a client does when its broker or database restarts or lags,
//! shown without disturbing the other tests that share the real server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::SecretUrl;

/// A TCP forwarder that can be cut and restored, on its own thread and runtime.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Connections clients opened, forwarded or refused: a client that tried again shows here.
    attempts: Arc<AtomicU64>,
    cuts: watch::Sender<u64>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TcpProxy {
    /// Starts forwarding from a free port on 127.0.0.1 to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        TcpProxy::start_slowed(target, Duration::ZERO)
    }

    /// The same, with every answer from `target` held back `delay`: a server (and a network)
    /// that much slower on each round trip.
    pub fn start_slowed(target: SocketAddr, delay: Duration) -> TcpProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the proxy");
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("the proxy binds a free port");
        listener
            .set_nonblocking(true)
            .expect("the proxy's socket is non-blocking");
        let addr = listener.local_addr().expect("the proxy's address");
        let up = Arc::new(AtomicBool::new(true));
        let (cuts, _) = watch::channel(0_u64);
        let accepting_up = up.clone();
        let attempts = Arc::new(AtomicU64::new(0));
        let counting = attempts.clone();
        let cut_signal = cuts.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("the proxy listens");
            while let Ok((mut inbound, _)) = listener.accept().await {
                counting.fetch_add(1, Ordering::SeqCst);
                if !accepting_up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = cut_signal.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let forward = async {
                        if delay.is_zero() {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        } else {
                            forward_slowed(&mut inbound, &mut outbound, delay).await;
                        }
                    };
                    tokio::select! {
                        () = forward => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            up,
            attempts,
            cuts,
            runtime: Some(runtime),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections clients have opened to the proxy so far (refused ones too): the
    /// positive sign that a client cut off has tried again.
    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Closes every forwarded connection and refuses new ones until [`TcpProxy::restore`].
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cuts.send_modify(|generation| *generation += 1);
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Forwards both ways; what comes back from the server waits `delay` before it goes on.
async fn forward_slowed(
    client: &mut tokio::net::TcpStream,
    server: &mut tokio::net::TcpStream,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let up = tokio::io::copy(&mut client_read, &mut server_write);
    let down = async {
        let mut buffer = vec![0_u8; 16 * 1024];
        loop {
            let read = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            tokio::time::sleep(delay).await;
            if client_write.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = up => {}
        () = down => {}
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `url` with its host and port replaced by `addr` (to send a client through a [`TcpProxy`]).
pub fn via(url: &SecretUrl, addr: SocketAddr) -> SecretUrl {
    let text = url.expose();
    let authority_start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[authority_start..];
    let authority_len = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    let userinfo = authority.rfind('@').map_or("", |at| &authority[..=at]);
    format!(
        "{}{userinfo}{addr}{}",
        &text[..authority_start],
        &rest[authority_len..]
    )
    .parse()
    .expect("replacing the host keeps a valid URL")
}

/// The host and port `url` points at.
pub fn socket_addr_of(url: &SecretUrl, default_port: u16) -> SocketAddr {
    use std::net::ToSocketAddrs;
    let (host, port) = url
        .host_and_port(default_port)
        .unwrap_or_else(|reason| panic!("{url}: {reason}"));
    (host.as_str(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_can_be_sent_through_a_proxy() {
        let url: SecretUrl = "amqp://guest:pw@127.0.0.1:5672/%2f".parse().expect("a URL");
        let addr: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
        assert_eq!(
            via(&url, addr).expose(),
            "amqp://guest:pw@127.0.0.1:4000/%2f"
        );
        assert_eq!(
            socket_addr_of(&url, 1),
            "127.0.0.1:5672".parse().expect("addr")
        );
        let bare: SecretUrl = "postgres://127.0.0.1/db?x=1".parse().expect("a URL");
        assert_eq!(
            via(&bare, addr).expose(),
            "postgres://127.0.0.1:4000/db?x=1"
        );
        assert_eq!(socket_addr_of(&bare, 5432).port(), 5432);
        let v6: SecretUrl = "redis://[::1]/0".parse().expect("a URL");
        assert_eq!(
            socket_addr_of(&v6, 6379),
            "[::1]:6379".parse().expect("addr")
        );
    }
}
