//! Helpers for tests that talk to RabbitMQ (feature `testkit`).
//!
//! - [`TestQueue`]: a work queue (and its `.dlq`) with a unique name, deleted when the value is
//!   dropped, so tests run in parallel on one broker and leave nothing behind. The broker is the
//!   one `AMQP_URL` (or the default) points at; when it cannot be reached the test fails, naming
//!   `make setup`.
//! - [`TcpProxy`]: a TCP forwarder on 127.0.0.1 that a test can cut (every connection closed, new
//!   ones refused) and restore, to show what a client does when its broker or database restarts,
//!   without disturbing the other tests that share the real server.
//! - [`flags`]: extreme flag values, and running a binary with each one it accepts, for the
//!   tests that show no setting makes a binary panic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use rand::Rng;
use rand::distr::Alphanumeric;
use tokio::sync::watch;

use crate::amqp::Topology;
use crate::config::{AmqpConfig, DEFAULT_AMQP_URL, QueueType, SecretUrl};

pub mod flags;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The broker the tests use: `AMQP_URL`, else the default.
pub fn amqp_url() -> SecretUrl {
    let _ = crate::config::load_dotenv();
    let text = std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned());
    text.parse()
        .unwrap_or_else(|error| panic!("AMQP_URL is not usable: {error}"))
}

/// A uniquely named work queue and dead-letter queue, deleted on drop.
#[derive(Debug)]
pub struct TestQueue {
    topology: Topology,
    url: SecretUrl,
}

impl TestQueue {
    /// Names a fresh queue and declares it (with its `.dlq`). Panics, naming `make setup`, when
    /// RabbitMQ cannot be reached.
    pub async fn create() -> TestQueue {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let suffix: String = rand::rng()
            .sample_iter(Alphanumeric)
            .take(6)
            .map(char::from)
            .collect();
        let name = format!(
            "pp_test_{}_{}_{suffix}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let queue = TestQueue {
            topology: Topology::new(name, QueueType::Classic),
            url: amqp_url(),
        };
        let (connection, channel) = queue.open().await;
        queue
            .topology
            .declare(&channel)
            .await
            .unwrap_or_else(|error| panic!("cannot declare {}: {error}", queue.name()));
        let _ = connection.close(200, "declared".into()).await;
        queue
    }

    pub fn name(&self) -> &str {
        self.topology.queue()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    /// Settings pointing at this queue on the test broker.
    pub fn config(&self) -> AmqpConfig {
        AmqpConfig {
            url: self.url.clone(),
            queue: self.name().to_owned(),
            queue_type: QueueType::Classic,
        }
    }

    /// Opens a connection and a channel to the test broker.
    pub async fn open(&self) -> (Connection, Channel) {
        let attempt = async {
            let connection =
                Connection::connect(self.url.expose(), ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            Ok::<_, lapin::Error>((connection, channel))
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(error)) => panic!(
                "cannot connect to RabbitMQ at {}: {error}\n\
                 Is RabbitMQ running? Run `make setup` first (or set AMQP_URL).",
                self.url
            ),
            Err(_) => panic!(
                "RabbitMQ at {} did not answer within {CONNECT_TIMEOUT:?}. Run `make setup` first.",
                self.url
            ),
        }
    }

    /// Publishes raw bytes to the work queue with these properties, waiting for the broker to
    /// have them (for messages a real producer would never send).
    pub async fn publish_raw(&self, body: &[u8], properties: BasicProperties) {
        let (connection, channel) = self.open().await;
        channel
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        let confirm = channel
            .basic_publish(
                "".into(),
                self.name().into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack(), "the broker refused the message");
        let _ = connection.close(200, "published".into()).await;
    }

    /// Puts a message in the dead-letter queue the way RabbitMQ puts a rejected one there:
    /// published to the work queue, taken, and rejected without requeue (so it carries `x-death`).
    /// Returns once the dead-letter queue holds one more message; nothing may consume the work
    /// queue meanwhile.
    pub async fn dead_letter(&self, body: &[u8], properties: BasicProperties) {
        let dlq = self.topology.dead_letter_queue();
        let before = self.ready_count(&dlq).await;
        self.publish_raw(body, properties).await;
        let (connection, channel) = self.open().await;
        let taken = channel
            .basic_get(self.name().into(), BasicGetOptions { no_ack: false })
            .await
            .expect("get")
            .expect("the message just published");
        taken
            .delivery
            .acker
            .reject(lapin::options::BasicRejectOptions { requeue: false })
            .await
            .expect("reject");
        let _ = connection.close(200, "dead-lettered".into()).await;
        // Dead-lettering is asynchronous in the broker.
        for _ in 0..200 {
            if self.ready_count(&dlq).await > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the rejected message never reached {dlq}");
    }

    /// Messages waiting in `queue` (the work queue or the dead-letter queue), ready for delivery.
    pub async fn ready_count(&self, queue: &str) -> u32 {
        let (connection, channel) = self.open().await;
        let declared = channel
            .queue_declare(
                queue.into(),
                lapin::options::QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("cannot inspect {queue}: {error}"));
        let _ = connection.close(200, "inspected".into()).await;
        declared.message_count()
    }

    /// Takes every message from the dead-letter queue: (body, x-death reason) pairs.
    pub async fn drain_dead_letters(&self) -> Vec<(Vec<u8>, String)> {
        let (connection, channel) = self.open().await;
        let mut letters = Vec::new();
        let dlq = self.topology.dead_letter_queue();
        while let Some(message) = channel
            .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap_or_else(|error| panic!("cannot read {dlq}: {error}"))
        {
            let reason = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|headers| headers.inner().get("x-first-death-reason").cloned())
                .map(|value| match value {
                    lapin::types::AMQPValue::LongString(text) => {
                        String::from_utf8_lossy(text.as_bytes()).into_owned()
                    }
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            letters.push((message.delivery.data.clone(), reason));
        }
        let _ = connection.close(200, "drained".into()).await;
        letters
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        let url = self.url.clone();
        let queues = [
            self.topology.queue().to_owned(),
            self.topology.dead_letter_queue(),
        ];
        // Drop cannot await, and may run inside a runtime: delete from a thread of its own.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            runtime.block_on(async move {
                let connect = Connection::connect(url.expose(), ConnectionProperties::default());
                let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| "RabbitMQ did not answer".to_owned())?
                    .map_err(|error| error.to_string())?;
                let channel = connection
                    .create_channel()
                    .await
                    .map_err(|error| error.to_string())?;
                for queue in queues {
                    channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await
                        .map_err(|error| error.to_string())?;
                }
                let _ = connection.close(200, "cleaned up".into()).await;
                Ok::<(), String>(())
            })
        })
        .join();
        match deleted {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                eprintln!("warning: cannot delete test queue {}: {error}", self.name())
            }
            Err(_) => eprintln!("warning: deleting test queue {} panicked", self.name()),
        }
    }
}

/// Sends SIGTERM to a child process (what `kill` and process managers send).
pub fn terminate(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -TERM {} failed", child.id());
}

/// Waits for `child` to exit and returns its status; after `patience` it kills the child and
/// panics.
pub async fn wait_exit(
    child: &mut std::process::Child,
    patience: Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + patience;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {patience:?}", child.id());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP forwarder that can be cut and restored, on its own thread and runtime.
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
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
        let cut_signal = cuts.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("the proxy listens");
            while let Ok((mut inbound, _)) = listener.accept().await {
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
            cuts,
            runtime: Some(runtime),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
    let text = url.expose();
    let authority_start = text.find("://").map_or(0, |i| i + 3);
    let rest = &text[authority_start..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority
        .rfind('@')
        .map_or(authority, |at| &authority[at + 1..]);
    let with_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("cannot resolve {with_port}"))
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
    }
}

/// The Redis the tests use: `REDIS_URL`, else the local one `make setup` starts.
pub fn redis_url() -> SecretUrl {
    let _ = crate::config::load_dotenv();
    let text = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| crate::config::DEFAULT_LOCAL_REDIS_URL.to_owned());
    text.parse()
        .unwrap_or_else(|error| panic!("REDIS_URL is not usable: {error}"))
}

/// A key prefix of its own in the tests' Redis, so tests share one server and run in parallel;
/// every key under it is deleted when the value is dropped. Creating one checks that Redis
/// answers, and fails the test naming `make setup` when it does not.
#[derive(Debug)]
pub struct TestRedis {
    url: SecretUrl,
    prefix: String,
}

impl TestRedis {
    pub fn create() -> TestRedis {
        let url = redis_url();
        let suffix: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(10)
            .map(char::from)
            .collect();
        let redis = TestRedis {
            prefix: format!("pp_test_{}", suffix.to_lowercase()),
            url,
        };
        let mut conn = redis.connection();
        let pong: String = redis::cmd("PING")
            .query(&mut conn)
            .unwrap_or_else(|error| panic!("Redis at {} does not answer PING: {error}", redis.url));
        assert_eq!(pong, "PONG");
        redis
    }

    pub fn url(&self) -> &SecretUrl {
        &self.url
    }

    /// Every key of this test starts with this.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Settings for a client of this Redis under this test's prefix.
    pub fn config(&self) -> crate::config::RedisConfig {
        crate::config::RedisConfig {
            url: Some(self.url.clone()),
            prefix: self.prefix.clone(),
            ..crate::config::RedisConfig::default()
        }
    }

    /// A blocking connection, for a test to look at the keys itself.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url.expose())
            .and_then(|client| client.get_connection_with_timeout(CONNECT_TIMEOUT))
            .unwrap_or_else(|error| {
                panic!(
                    "cannot connect to Redis at {}: {error}. Start it with `make setup`.",
                    self.url
                )
            })
    }

    /// This test's keys.
    pub fn keys(&self) -> Vec<String> {
        let mut conn = self.connection();
        let keys: redis::Iter<'_, String> = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{}:*", self.prefix))
            .arg("COUNT")
            .arg(1000)
            .clone()
            .iter(&mut conn)
            .expect("SCAN runs");
        keys.filter_map(Result::ok).collect()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let keys = self.keys();
        if keys.is_empty() {
            return;
        }
        let mut conn = self.connection();
        if let Err(error) = redis::cmd("DEL").arg(&keys).query::<u64>(&mut conn) {
            eprintln!("warning: deleting the test's Redis keys failed: {error}");
        }
    }
}
