//! A broker in front of the real one that misbehaves the ways a real one does under stress,
//! without touching the RabbitMQ the other tests share: it stalls (nothing passes either way),
//! nacks every publisher confirm (its `basic.ack` turned into `basic.nack`), withholds them, nacks every confirm
//! of the connections open at a moment and of none opened after (what RabbitMQ 3.10 does to a
//! channel opened while a quorum queue elects its leader), or blocks the connection
//! (`connection.blocked` sent to the client, which is then no longer read from, as RabbitMQ does
//! under a memory or disk alarm). It forwards whole AMQP frames from the broker, so what it adds
//! or changes falls between frames.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{broadcast, watch};

/// A misbehaving AMQP forwarder on 127.0.0.1, on its own thread and runtime.
#[derive(Debug)]
pub struct FaultyBroker {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    inject: broadcast::Sender<Vec<u8>>,
    /// Connections accepted so far; each is numbered in order from 0.
    accepted: Arc<AtomicU64>,
    /// Connections numbered below this nack every confirm, whatever the mode.
    nacking_below: Arc<AtomicU64>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forward,
    Stall,
    NackConfirms,
    WithholdConfirms,
    Blocked,
}

/// What a connection's forwarders share with the broker.
#[derive(Clone)]
struct Link {
    number: u64,
    nacking_below: Arc<AtomicU64>,
}

impl Link {
    fn nacks(&self, mode: Mode) -> bool {
        mode == Mode::NackConfirms || self.number < self.nacking_below.load(Ordering::SeqCst)
    }
}

impl FaultyBroker {
    /// Starts forwarding from a free port on 127.0.0.1 to the broker at `target`, faithfully.
    pub fn start(target: SocketAddr) -> FaultyBroker {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the broker proxy");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("the proxy's address");
        let (mode, _) = watch::channel(Mode::Forward);
        let (inject, _) = broadcast::channel(16);
        let accepted = Arc::new(AtomicU64::new(0));
        let nacking_below = Arc::new(AtomicU64::new(0));
        let (modes, injections) = (mode.clone(), inject.clone());
        let (counting, nacking) = (accepted.clone(), nacking_below.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listens");
            while let Ok((client, _)) = listener.accept().await {
                let link = Link {
                    number: counting.fetch_add(1, Ordering::SeqCst),
                    nacking_below: nacking.clone(),
                };
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(to_broker(client_read, server_write, modes.subscribe()));
                tokio::spawn(to_client(
                    server_read,
                    client_write,
                    modes.subscribe(),
                    injections.subscribe(),
                    link,
                ));
            }
        });
        FaultyBroker {
            addr,
            mode,
            inject,
            accepted,
            nacking_below,
            runtime: Some(runtime),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections clients opened so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Nothing passes, either way, until [`FaultyBroker::heal`].
    pub fn stall(&self) {
        self.mode.send_replace(Mode::Stall);
    }

    /// Every publisher confirm becomes a nack, until [`FaultyBroker::heal`].
    pub fn nack_every_confirm(&self) {
        self.mode.send_replace(Mode::NackConfirms);
    }

    /// No publisher confirm reaches a client (everything else does: connections open, queues
    /// are declared, messages are enqueued), until [`FaultyBroker::heal`]: a node that takes
    /// publishes it cannot settle, as one cut off from its queue's leader does.
    pub fn withhold_confirms(&self) {
        self.mode.send_replace(Mode::WithholdConfirms);
    }

    /// Every connection open now nacks every confirm for as long as it lasts; connections
    /// opened from now on confirm faithfully. (RabbitMQ's own messages are still enqueued: only
    /// the confirm is changed.)
    pub fn nack_on_open_connections(&self) {
        self.nacking_below
            .store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Sends `connection.blocked` and stops reading from the clients.
    pub fn block(&self, reason: &str) {
        let mut arguments = vec![u8::try_from(reason.len()).expect("a short reason")];
        arguments.extend_from_slice(reason.as_bytes());
        self.mode.send_replace(Mode::Blocked);
        let _ = self.inject.send(method_frame(60, &arguments));
    }

    /// Sends `connection.unblocked` and reads from the clients again.
    pub fn unblock(&self) {
        let _ = self.inject.send(method_frame(61, &[]));
        self.mode.send_replace(Mode::Forward);
    }

    /// Forwards faithfully again (but for connections [`FaultyBroker::nack_on_open_connections`]
    /// named).
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for FaultyBroker {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A frame of the connection class (10) on channel 0.
fn method_frame(method: u16, arguments: &[u8]) -> Vec<u8> {
    let mut payload = 10_u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&method.to_be_bytes());
    payload.extend_from_slice(arguments);
    let mut frame = vec![1, 0, 0];
    frame.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.push(0xCE);
    frame
}

/// Client to broker, bytes as they come, held back while stalled or blocked.
async fn to_broker(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let paused = matches!(*mode.borrow(), Mode::Stall | Mode::Blocked);
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            read = from.read(&mut buffer), if !paused => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => if to.write_all(&buffer[..n]).await.is_err() { return },
            },
        }
    }
}

/// Broker to client, whole frames, held back while stalled, with confirms turned into nacks or
/// frames added between them on demand.
async fn to_client(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    mut inject: broadcast::Receiver<Vec<u8>>,
    link: Link,
) {
    let mut buffer = vec![0_u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let current = *mode.borrow();
        tokio::select! {
            changed = mode.changed() => if changed.is_err() { return },
            injected = inject.recv() => match injected {
                Ok(frame) => if to.write_all(&frame).await.is_err() { return },
                Err(_) => return,
            },
            read = from.read(&mut buffer), if current != Mode::Stall => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    pending.extend_from_slice(&buffer[..n]);
                    while let Some(mut frame) = take_frame(&mut pending) {
                        if current == Mode::WithholdConfirms && is_ack(&frame) {
                            continue;
                        }
                        if link.nacks(current) {
                            ack_to_nack(&mut frame);
                        }
                        if to.write_all(&frame).await.is_err() {
                            return;
                        }
                    }
                }
            },
        }
    }
}

/// The first whole frame of `pending`, taken out of it; `None` until one is whole.
fn take_frame(pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    if pending.len() < 7 {
        return None;
    }
    let size = u32::from_be_bytes([pending[3], pending[4], pending[5], pending[6]]);
    let length = 7 + usize::try_from(size).expect("a frame size") + 1;
    (pending.len() >= length).then(|| pending.drain(..length).collect())
}

/// Whether `frame` is a `basic.ack` (class 60, method 80): from the broker, a confirm.
fn is_ack(frame: &[u8]) -> bool {
    frame.len() >= 11 && frame[0] == 1 && frame[7..11] == [0, 60, 0, 80]
}

/// A `basic.ack` made a `basic.nack` (60, 120): they carry the same arguments. Any other frame
/// is left alone.
fn ack_to_nack(frame: &mut [u8]) {
    if is_ack(frame) {
        frame[9..11].copy_from_slice(&120_u16.to_be_bytes());
    }
}
