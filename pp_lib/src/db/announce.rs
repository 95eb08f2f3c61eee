//! PostgreSQL's `NOTIFY`, sent so that it costs the writes it announces nothing.
//!
//! A transaction that sends `NOTIFY` takes, at its commit, a lock every notifying transaction of
//! the database shares, and holds it until its commit is on disk: notifying commits go one at a
//! time. Announcing each insert from its own transaction (a trigger did) made the inserts pay for
//! it: pgbench's one-insert transaction fell from 8,858–10,151 to 3,404–3,480 a second, the API's
//! `POST /work` from 16,557–18,176 to 14,395–14,842. So the writes commit without a word, and
//! the process that made them announces afterwards, in a transaction of its own:
//! [`announce`] for a one-off writer (cli_01), an [`Announcer`] for a server, which folds every
//! announcement asked while one is being sent, or within a few milliseconds of the last, into
//! the next: however many writes it makes, it sends a few hundred a second at most, and no write
//! waits for one.
//!
//! The listeners ([`crate::db::listen`]) keep their periodic look: a writer that announces
//! nothing (a hand-written `insert`) is found then.

use diesel::RunQueryDsl;
use diesel::sql_types::Text;

use crate::db::PgConnection;

/// Sends an empty notification on each of `channels`, in one statement, committed at once.
pub fn announce(conn: &mut PgConnection, channels: &[&str]) -> diesel::QueryResult<()> {
    if channels.is_empty() {
        return Ok(());
    }
    let calls: Vec<String> = (1..=channels.len())
        .map(|n| format!("pg_notify(${n}, '')"))
        .collect();
    let statement = format!("select {}", calls.join(", "));
    // Each channel is bound, never spliced into the text.
    let mut query = diesel::sql_query(statement).into_boxed();
    for channel in channels {
        query = query.bind::<Text, _>(channel.to_string());
    }
    query.execute(conn).map(|_| ())
}

#[cfg(feature = "listen")]
pub use self::announcer::Announcer;

#[cfg(feature = "listen")]
mod announcer {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::announce;
    use crate::db::{PgPool, with_connection};
    use crate::shutdown::Shutdown;

    /// Longest pause after a failed announcement before the next try.
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    /// Least time between two announcements: what is asked meanwhile goes out together, so a
    /// process announces at most 200 times a second however fast it writes (each announcement
    /// is a commit of its own, with its flush to disk: sent back to back under load, they took
    /// 11% off the API's `POST /work`), and a lone write is announced at once.
    const SPACING: Duration = Duration::from_millis(5);

    /// Announcements a server owes, sent by [`Announcer::run`] one statement at a time: each
    /// channel asked for while a statement is on its way goes out, once, in the next.
    pub struct Announcer {
        channels: Vec<(&'static str, AtomicBool)>,
        asked: Notify,
    }

    impl Announcer {
        /// An announcer for these channels (plain identifiers).
        pub fn new(channels: &[&'static str]) -> Arc<Self> {
            Arc::new(Announcer {
                channels: channels
                    .iter()
                    .map(|channel| (*channel, AtomicBool::new(false)))
                    .collect(),
                asked: Notify::new(),
            })
        }

        /// Asks for a notification on `channel`, after a write committed. Returns at once.
        /// A channel this announcer was not made for is a bug: it is logged, never sent.
        pub fn announce(&self, channel: &str) {
            match self.channels.iter().find(|(name, _)| *name == channel) {
                Some((_, owed)) => {
                    owed.store(true, Ordering::Release);
                    self.asked.notify_one();
                }
                None => log::error!("no announcer for the channel {channel}"),
            }
        }

        /// The channels owed now, cleared.
        fn take(&self) -> Vec<&'static str> {
            self.channels
                .iter()
                .filter(|(_, owed)| owed.swap(false, Ordering::AcqRel))
                .map(|(name, _)| *name)
                .collect()
        }

        /// Owes `channels` again (their statement failed).
        fn owe(&self, channels: &[&'static str]) {
            for (name, owed) in &self.channels {
                if channels.contains(name) {
                    owed.store(true, Ordering::Release);
                }
            }
        }

        /// Sends what is asked until `shutdown`, then what is still owed, on connections from
        /// `pool`. A failure (the database down) is logged once per outage and tried again
        /// with backoff; the listeners' periodic looks cover the wait.
        pub async fn run(self: Arc<Self>, pool: PgPool, shutdown: Shutdown) {
            let mut backoff = Duration::from_millis(100);
            let mut failing = false;
            loop {
                let stopping = tokio::select! {
                    () = self.asked.notified() => false,
                    () = shutdown.requested() => true,
                };
                let channels = self.take();
                match send(&pool, &channels).await {
                    Ok(()) => {
                        if failing {
                            log::info!("announcing again");
                            failing = false;
                        }
                        backoff = Duration::from_millis(100);
                        if !channels.is_empty() && !stopping {
                            // Cut short by a stop, it leaves what was asked to the last round.
                            shutdown.sleep(SPACING).await;
                        }
                    }
                    Err(reason) => {
                        if !failing {
                            log::warn!(
                                "cannot announce on {} ({reason}); trying again with backoff, \
                                 and the listeners look periodically meanwhile",
                                channels.join(", ")
                            );
                            failing = true;
                        }
                        self.owe(&channels);
                        self.asked.notify_one();
                        if stopping || !shutdown.sleep(backoff).await {
                            return;
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                if stopping {
                    return;
                }
            }
        }
    }

    /// Sends `channels` (nothing when empty) on a blocking thread.
    async fn send(pool: &PgPool, channels: &[&'static str]) -> Result<(), String> {
        if channels.is_empty() {
            return Ok(());
        }
        let pool = pool.clone();
        let channels = channels.to_vec();
        match tokio::task::spawn_blocking(move || {
            with_connection(&pool, |conn| Ok(announce(conn, &channels)?))
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }
}
