//! PostgreSQL's `LISTEN`: a process learns at once that another changed something it keeps or
//! waits for, instead of at its next periodic look.
//!
//! A [`listen`] task holds one connection of its own (not the pool's), `LISTEN`s on a channel,
//! and wakes whoever waits on its [`Notify`] for every notification; [`listen_with`] tells a
//! [`Hearing`] each notification's payload instead (the API's waiting requests learn which works
//! finished). libpq reads notifications
//! without blocking, so the connection is polled every [`POLL_EVERY`]: a notification is seen
//! within that (5 ms later on average: a work created over HTTP is swept within milliseconds),
//! and waiting costs one system call per poll, a hundred a second (diesel gives no socket to
//! wait on instead): an idle API, debug build, used 0.85% of a core against 0.25% when it
//! polled every 100 ms. A connection that fails is made again with backoff (logged once per
//! outage); each new one is told to whoever relies on it ([`Hearing::connected`]), since
//! notifications sent meanwhile were lost.
//! Whoever relies on it keeps a periodic look as the fallback.

use std::sync::Arc;
use std::time::Duration;

use diesel::RunQueryDsl;
use tokio::sync::Notify;

use crate::config::SecretUrl;
use crate::db::PgConnection;
use crate::db::pool::establish;
use crate::shutdown::Shutdown;

/// How often the connection is looked at for notifications.
pub const POLL_EVERY: Duration = Duration::from_millis(10);
/// Longest pause between two attempts to connect again.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the connection is checked with a query.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for one connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a listener does with what it hears.
pub trait Hearing: Send + 'static {
    /// A notification, with its payload (empty when none was sent).
    fn heard(&mut self, payload: &str);
    /// The listener is connected, for the first time or again: whatever was sent while it was
    /// not is lost, so whoever relies on it should look again.
    fn connected(&mut self);
    /// Whether anyone still relies on it: once not, the listener ends (within a poll).
    fn wanted(&self) -> bool;
}

/// Wakes a [`Notify`]'s waiter ([`Notify::notify_one`]: a permit is kept while none waits, so
/// nothing is missed between two waits) at each notification and each (re)connection; wanted
/// while anyone else holds the `Notify`.
struct Wake(Arc<Notify>);

impl Hearing for Wake {
    fn heard(&mut self, _payload: &str) {
        self.0.notify_one();
    }

    fn connected(&mut self) {
        self.0.notify_one();
    }

    fn wanted(&self) -> bool {
        Arc::strong_count(&self.0) > 1
    }
}

/// Listens on `channel` (a plain identifier) of the database at `url` until `shutdown`, or
/// until nobody else holds `woken`, waking `woken`'s waiter at each notification and after
/// each (re)connection. It runs on a blocking thread, which a runtime that goes (its tasks
/// dropped, so `woken` held by no one) waits for: it must end then, within a poll.
pub async fn listen(url: SecretUrl, channel: &'static str, woken: Arc<Notify>, shutdown: Shutdown) {
    listen_with(url, channel, Wake(woken), shutdown).await;
}

/// Listens on `channel` of the database at `url` until `shutdown` or until `hearing` is no
/// longer [wanted](Hearing::wanted), telling `hearing` each notification and each
/// (re)connection, on a blocking thread.
pub async fn listen_with(
    url: SecretUrl,
    channel: &'static str,
    mut hearing: impl Hearing,
    shutdown: Shutdown,
) {
    let ran = tokio::task::spawn_blocking(move || {
        listen_blocking(&url, channel, &mut hearing, &shutdown);
    })
    .await;
    if let Err(error) = ran {
        log::error!("listening on {channel} panicked: {error}");
    }
}

fn listen_blocking(
    url: &SecretUrl,
    channel: &str,
    hearing: &mut impl Hearing,
    shutdown: &Shutdown,
) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    while !shutdown.is_requested() && hearing.wanted() {
        match connect(url, channel) {
            Ok(mut conn) => {
                if failing {
                    log::info!("listening on {channel} again");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                hearing.connected();
                if let Err(error) = poll(&mut conn, hearing, shutdown) {
                    log::warn!(
                        "lost the connection listening on {channel} ({error}); connecting again"
                    );
                    failing = true;
                }
            }
            Err(error) => {
                if !failing {
                    log::warn!(
                        "cannot listen on {channel} ({error}); trying again with backoff, and \
                         relying on periodic looks meanwhile"
                    );
                    failing = true;
                }
                sleep_unless_stopped(backoff, &|| shutdown.is_requested() || !hearing.wanted());
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn connect(url: &SecretUrl, channel: &str) -> Result<PgConnection, crate::Error> {
    let mut conn = establish(url, CONNECT_TIMEOUT)?;
    diesel::sql_query(format!("listen {channel}")).execute(&mut conn)?;
    Ok(conn)
}

/// Tells `hearing` each notification until it is no longer wanted or `shutdown`; the error
/// that ended the connection. A server gone without a word (its host down) sends nothing to
/// notice: a query every [`CHECK_EVERY`] finds out.
fn poll(
    conn: &mut PgConnection,
    hearing: &mut impl Hearing,
    shutdown: &Shutdown,
) -> Result<(), crate::Error> {
    let mut checked = std::time::Instant::now();
    while !shutdown.is_requested() && hearing.wanted() {
        if checked.elapsed() >= CHECK_EVERY {
            diesel::sql_query("select 1").execute(conn)?;
            checked = std::time::Instant::now();
        }
        for notification in conn.notifications_iter() {
            hearing.heard(&notification?.payload);
        }
        sleep_unless_stopped(POLL_EVERY, &|| shutdown.is_requested() || !hearing.wanted());
    }
    Ok(())
}

fn sleep_unless_stopped(pause: Duration, stopped: &impl Fn() -> bool) {
    let step = POLL_EVERY.min(pause);
    let mut slept = Duration::ZERO;
    while slept < pause && !stopped() {
        std::thread::sleep(step);
        slept += step;
    }
}
