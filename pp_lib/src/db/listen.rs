//! PostgreSQL's `LISTEN`: a process learns at once that another changed something it keeps or
//! waits for, instead of at its next periodic look.
//!
//! A [`listen`] task holds one connection of its own (not the pool's), `LISTEN`s on a channel,
//! and wakes whoever waits on its [`Notify`] for every notification. libpq reads notifications
//! without blocking, so the connection is polled every [`POLL_EVERY`]: a notification is seen
//! within that (5 ms later on average: a work created over HTTP is swept within milliseconds),
//! and waiting costs one system call per poll, a hundred a second (diesel gives no socket to
//! wait on instead): an idle API, debug build, used 0.85% of a core against 0.25% when it
//! polled every 100 ms. A connection that fails is made again with backoff (logged once per
//! outage); each new one wakes the waiters once, since notifications sent meanwhile were lost.
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

/// Listens on `channel` (a plain identifier) of the database at `url` until `shutdown`, or
/// until nobody else holds `woken`, waking `woken`'s waiter ([`Notify::notify_one`]: a permit is
/// kept while none waits, so nothing is missed between two waits) at each notification and after
/// each (re)connection. It runs on a blocking thread, which a runtime that goes (its tasks
/// dropped, so `woken` held by no one) waits for: it must end then, within a poll.
pub async fn listen(url: SecretUrl, channel: &'static str, woken: Arc<Notify>, shutdown: Shutdown) {
    let ran =
        tokio::task::spawn_blocking(move || listen_blocking(&url, channel, &woken, &shutdown))
            .await;
    if let Err(error) = ran {
        log::error!("listening on {channel} panicked: {error}");
    }
}

fn listen_blocking(url: &SecretUrl, channel: &str, woken: &Arc<Notify>, shutdown: &Shutdown) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    let stopped = || shutdown.is_requested() || Arc::strong_count(woken) < 2;
    while !stopped() {
        match connect(url, channel) {
            Ok(mut conn) => {
                if failing {
                    log::info!("listening on {channel} again");
                    failing = false;
                }
                backoff = Duration::from_millis(100);
                wake(woken);
                if let Err(error) = poll(&mut conn, woken, &stopped) {
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
                sleep_unless_stopped(backoff, &stopped);
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

/// Wakes `woken` for each notification until `stopped`; the error that ended the connection. A
/// server gone without a word (its host down) sends nothing to notice: a query every
/// [`CHECK_EVERY`] finds out.
fn poll(
    conn: &mut PgConnection,
    woken: &Notify,
    stopped: &impl Fn() -> bool,
) -> Result<(), crate::Error> {
    let mut checked = std::time::Instant::now();
    while !stopped() {
        if checked.elapsed() >= CHECK_EVERY {
            diesel::sql_query("select 1").execute(conn)?;
            checked = std::time::Instant::now();
        }
        let mut notified = false;
        for notification in conn.notifications_iter() {
            notification?;
            notified = true;
        }
        if notified {
            wake(woken);
        }
        sleep_unless_stopped(POLL_EVERY, stopped);
    }
    Ok(())
}

fn wake(woken: &Notify) {
    woken.notify_one();
}

fn sleep_unless_stopped(pause: Duration, stopped: &impl Fn() -> bool) {
    let step = POLL_EVERY.min(pause);
    let mut slept = Duration::ZERO;
    while slept < pause && !stopped() {
        std::thread::sleep(step);
        slept += step;
    }
}
