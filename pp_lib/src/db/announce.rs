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

/// Longest payload pp sends: PostgreSQL refuses one of 8,000 bytes or more.
pub const MAX_PAYLOAD: usize = 7_900;

/// Sends an empty notification on each of `channels`, in one statement, committed at once.
pub fn announce(conn: &mut PgConnection, channels: &[&str]) -> diesel::QueryResult<()> {
    let notifications: Vec<(&str, String)> = channels
        .iter()
        .map(|channel| (*channel, String::new()))
        .collect();
    notify(conn, &notifications)
}

/// Sends each `(channel, payload)`, in one statement, committed at once. A payload is at most
/// [`MAX_PAYLOAD`] bytes ([`payloads`] cuts a list to fit).
pub fn notify(
    conn: &mut PgConnection,
    notifications: &[(&str, String)],
) -> diesel::QueryResult<()> {
    if notifications.is_empty() {
        return Ok(());
    }
    let calls: Vec<String> = (1..=notifications.len())
        .map(|n| format!("pg_notify(${}, ${})", 2 * n - 1, 2 * n))
        .collect();
    let statement = format!("select {}", calls.join(", "));
    // Channels and payloads are bound, never spliced into the text.
    let mut query = diesel::sql_query(statement).into_boxed();
    for (channel, payload) in notifications {
        query = query
            .bind::<Text, _>(channel.to_string())
            .bind::<Text, _>(payload.clone());
    }
    query.execute(conn).map(|_| ())
}

/// `items` joined by commas into payloads of at most [`MAX_PAYLOAD`] bytes (an item longer
/// than that goes alone, cut: items are short ids).
pub fn payloads(items: &[String]) -> Vec<String> {
    let mut payloads = Vec::new();
    let mut current = String::new();
    for item in items {
        let item = &item[..floor_char_boundary(item, MAX_PAYLOAD)];
        if !current.is_empty() && current.len() + 1 + item.len() > MAX_PAYLOAD {
            payloads.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(item);
    }
    if !current.is_empty() {
        payloads.push(current);
    }
    payloads
}

/// The largest index at most `max` that starts a character of `text`.
fn floor_char_boundary(text: &str, max: usize) -> usize {
    (0..=max.min(text.len()))
        .rev()
        .find(|&index| text.is_char_boundary(index))
        .unwrap_or(0)
}

#[cfg(feature = "listen")]
pub use self::announcer::Announcer;

#[cfg(feature = "listen")]
mod announcer {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::{notify, payloads};
    use crate::db::{PgPool, with_connection};
    use crate::shutdown::Shutdown;

    /// Longest pause after a failed announcement before the next try.
    const MAX_BACKOFF: Duration = Duration::from_secs(5);
    /// Least time between two announcements: what is asked meanwhile goes out together, so a
    /// process announces at most 200 times a second however fast it writes (each announcement
    /// is a commit of its own, with its flush to disk: sent back to back under load, they took
    /// 11% off the API's `POST /work`), and a lone write is announced at once.
    const SPACING: Duration = Duration::from_millis(5);

    /// Items owed on one channel beyond which they are dropped for one empty announcement,
    /// which tells the listeners to look at everything again (a database down for long).
    const MAX_OWED_ITEMS: usize = 100_000;

    /// What is owed on one channel.
    struct Owed {
        channel: &'static str,
        /// An announcement is owed.
        asked: bool,
        /// The items it carries; none for an empty one.
        items: Vec<String>,
        /// Too many items were owed: one empty announcement stands for them all (and for any
        /// asked until it is sent).
        overflowed: bool,
    }

    /// Announcements a server owes, sent by [`Announcer::run`] one statement at a time: each
    /// channel asked for while a statement is on its way goes out, once, in the next, with
    /// every item asked meanwhile.
    pub struct Announcer {
        owed: Mutex<Vec<Owed>>,
        asked: Notify,
    }

    impl Announcer {
        /// An announcer for these channels (plain identifiers).
        pub fn new(channels: &[&'static str]) -> Arc<Self> {
            Arc::new(Announcer {
                owed: Mutex::new(
                    channels
                        .iter()
                        .map(|channel| Owed {
                            channel,
                            asked: false,
                            items: Vec::new(),
                            overflowed: false,
                        })
                        .collect(),
                ),
                asked: Notify::new(),
            })
        }

        /// Asks for an empty notification on `channel`, after a write committed. Returns at
        /// once. A channel this announcer was not made for is a bug: it is logged, never sent.
        pub fn announce(&self, channel: &str) {
            self.owe(channel, Vec::new());
        }

        /// Asks for `items` to be announced on `channel` (joined by commas, in as many
        /// notifications as their length asks), after the write they tell of committed.
        pub fn announce_items(&self, channel: &str, items: Vec<String>) {
            self.owe(channel, items);
        }

        fn owe(&self, channel: &str, items: Vec<String>) {
            {
                let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
                let Some(entry) = owed.iter_mut().find(|entry| entry.channel == channel) else {
                    log::error!("no announcer for the channel {channel}");
                    return;
                };
                entry.asked = true;
                if entry.overflowed || entry.items.len() + items.len() > MAX_OWED_ITEMS {
                    // Too many to tell one by one: an empty announcement says "look again".
                    entry.items = Vec::new();
                    entry.overflowed = true;
                } else {
                    entry.items.extend(items);
                }
            }
            self.asked.notify_one();
        }

        /// The notifications owed now, cleared.
        pub(super) fn take(&self) -> Vec<(&'static str, String)> {
            let mut owed = self.owed.lock().unwrap_or_else(PoisonError::into_inner);
            let mut notifications = Vec::new();
            for entry in owed.iter_mut().filter(|entry| entry.asked) {
                entry.asked = false;
                entry.overflowed = false;
                let items = std::mem::take(&mut entry.items);
                if items.is_empty() {
                    notifications.push((entry.channel, String::new()));
                } else {
                    notifications.extend(
                        payloads(&items)
                            .into_iter()
                            .map(|payload| (entry.channel, payload)),
                    );
                }
            }
            notifications
        }

        /// Owes `notifications` again (their statement failed).
        fn owe_again(&self, notifications: Vec<(&'static str, String)>) {
            for (channel, payload) in notifications {
                let items = if payload.is_empty() {
                    Vec::new()
                } else {
                    vec![payload]
                };
                self.owe(channel, items);
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
                let notifications = self.take();
                match send(&pool, &notifications).await {
                    Ok(()) => {
                        if failing {
                            log::info!("announcing again");
                            failing = false;
                        }
                        backoff = Duration::from_millis(100);
                        if !notifications.is_empty() && !stopping {
                            // Cut short by a stop, it leaves what was asked to the last round.
                            shutdown.sleep(SPACING).await;
                        }
                    }
                    Err(reason) => {
                        if !failing {
                            log::warn!(
                                "cannot announce ({reason}); trying again with backoff, and the \
                                 listeners look periodically meanwhile"
                            );
                            failing = true;
                        }
                        self.owe_again(notifications);
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

    /// Sends `notifications` (nothing when there are none) on a blocking thread.
    async fn send(pool: &PgPool, notifications: &[(&'static str, String)]) -> Result<(), String> {
        if notifications.is_empty() {
            return Ok(());
        }
        let pool = pool.clone();
        let notifications = notifications.to_vec();
        match tokio::task::spawn_blocking(move || {
            with_connection(&pool, |conn| Ok(notify(conn, &notifications)?))
        })
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_joined_into_payloads_that_postgresql_takes() {
        assert!(payloads(&[]).is_empty());
        assert_eq!(payloads(&["1".to_owned(), "2/x".to_owned()]), ["1,2/x"]);
        let items: Vec<String> = (0..2_000).map(|n| format!("{n:08}")).collect();
        let sent = payloads(&items);
        assert!(sent.len() > 1);
        assert!(sent.iter().all(|payload| payload.len() <= MAX_PAYLOAD));
        let back: Vec<String> = sent
            .iter()
            .flat_map(|payload| payload.split(','))
            .map(str::to_owned)
            .collect();
        assert_eq!(back, items, "every item once, in order");
        let long = "é".repeat(MAX_PAYLOAD);
        let cut = payloads(&[long]);
        assert_eq!(cut.len(), 1);
        assert!(cut[0].len() <= MAX_PAYLOAD);
    }

    #[cfg(feature = "listen")]
    #[test]
    fn past_the_most_items_one_empty_announcement_stands_for_them_all() {
        let announcer = Announcer::new(&["a"]);
        announcer.announce_items("a", vec!["1".to_owned()]);
        assert_eq!(announcer.take(), [("a", "1".to_owned())]);
        announcer.announce_items("a", (0..100_001).map(|n| n.to_string()).collect());
        announcer.announce_items("a", vec!["2".to_owned()]);
        assert_eq!(
            announcer.take(),
            [("a", String::new())],
            "look again, whatever came after"
        );
        announcer.announce_items("a", vec!["3".to_owned()]);
        assert_eq!(announcer.take(), [("a", "3".to_owned())]);
        assert!(announcer.take().is_empty());
    }
}
