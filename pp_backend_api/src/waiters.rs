//! Requests that wait for a work to be done (`Prefer: wait=N`, RFC 7240), instead of polling.
//!
//! A waiting request holds no database connection and no worker thread: it registers in
//! [`Waiters`] and awaits a one-shot wake-up, or its time. The consumers and sweepers announce
//! every work they finish on PostgreSQL's `pp_works_done` once it is committed; one listener per
//! process ([`Hearing`]) wakes the requests waiting for those works, in whichever replica they
//! are. A wake-up means "look again": the request reads the work (or the demand) afresh and,
//! if it is still not done and time is left, waits again. When the listener (re)connects, or a
//! notification names no works, every request looks again; when the server stops, every request
//! answers with what it has.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderValue};
use pp_lib::db::listen::Hearing;
use pp_lib::db::works::done_items;
use tokio::sync::oneshot;
use uuid::Uuid;

use crate::error::ApiError;

/// The header a client asks to wait with.
pub const PREFER: &str = "prefer";
/// The header that says a preference was honoured.
pub const PREFERENCE_APPLIED: &str = "preference-applied";

/// What a request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Awaited {
    /// The work with this id to be done.
    Work(i64),
    /// The work of the demand with this message id to be recorded.
    Demand(Uuid),
}

/// The requests waiting in this process.
pub struct Waiters {
    registry: Mutex<Registry>,
    /// Most requests that may wait at once; past it, a request asking to wait is answered 503.
    most: usize,
    /// Set when the server stops: nothing waits any more.
    closed: AtomicBool,
}

#[derive(Default)]
struct Registry {
    waiting: HashMap<Awaited, Vec<(u64, oneshot::Sender<()>)>>,
    count: usize,
    next_ticket: u64,
}

/// Why a request cannot wait.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// As many requests wait as [`Waiters`] allows.
    Full(usize),
    /// The server is stopping.
    Closed,
}

impl Waiters {
    /// Room for `most` waiting requests.
    pub fn new(most: usize) -> Arc<Self> {
        Arc::new(Waiters {
            registry: Mutex::new(Registry::default()),
            most,
            closed: AtomicBool::new(false),
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many requests wait now.
    pub fn count(&self) -> usize {
        self.registry().count
    }

    /// Registers a request waiting for `awaited`: woken once by [`Waiters::finished`] (or
    /// [`Waiters::wake_all`]); its registration goes when the [`Waiting`] is dropped.
    pub fn wait_for(self: &Arc<Self>, awaited: Awaited) -> Result<Waiting, Refusal> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Refusal::Closed);
        }
        let mut registry = self.registry();
        if registry.count >= self.most {
            return Err(Refusal::Full(self.most));
        }
        let (wake, woken) = oneshot::channel();
        let ticket = registry.next_ticket;
        registry.next_ticket += 1;
        registry.count += 1;
        registry
            .waiting
            .entry(awaited)
            .or_default()
            .push((ticket, wake));
        Ok(Waiting {
            waiters: self.clone(),
            awaited,
            ticket,
            woken,
        })
    }

    /// Wakes whoever waits for the work `id` or, when it has one, for its demand.
    pub fn finished(&self, id: i64, demand: Option<Uuid>) {
        let mut woken = Vec::new();
        {
            let mut registry = self.registry();
            for awaited in std::iter::once(Awaited::Work(id)).chain(demand.map(Awaited::Demand)) {
                if let Some(waiting) = registry.waiting.remove(&awaited) {
                    registry.count -= waiting.len();
                    woken.extend(waiting);
                }
            }
        }
        for (_, wake) in woken {
            let _ = wake.send(());
        }
    }

    /// Wakes every waiting request, to look again.
    pub fn wake_all(&self) {
        let woken: Vec<_> = {
            let mut registry = self.registry();
            registry.count = 0;
            registry.waiting.drain().collect()
        };
        for (_, waiting) in woken {
            for (_, wake) in waiting {
                let _ = wake.send(());
            }
        }
    }

    /// The server stops: every request answers now, and none waits from here on.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake_all();
    }

    fn forget(&self, awaited: Awaited, ticket: u64) {
        let mut registry = self.registry();
        if let Some(waiting) = registry.waiting.get_mut(&awaited) {
            let before = waiting.len();
            waiting.retain(|(held, _)| *held != ticket);
            let gone = before - waiting.len();
            if waiting.is_empty() {
                registry.waiting.remove(&awaited);
            }
            registry.count -= gone;
        }
    }
}

/// One request's place among the [`Waiters`].
pub struct Waiting {
    waiters: Arc<Waiters>,
    awaited: Awaited,
    ticket: u64,
    woken: oneshot::Receiver<()>,
}

impl Waiting {
    /// Resolves when woken, or after `patience`: true when woken.
    pub async fn woken_within(&mut self, patience: Duration) -> bool {
        matches!(
            tokio::time::timeout(patience, &mut self.woken).await,
            Ok(Ok(()))
        )
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.waiters.forget(self.awaited, self.ticket);
    }
}

/// What the listener on `pp_works_done` does: wakes the requests waiting for the works named.
pub struct WakeWaiters(pub Arc<Waiters>);

impl Hearing for WakeWaiters {
    fn heard(&mut self, payload: &str) {
        if payload.is_empty() {
            self.0.wake_all();
            return;
        }
        for (id, demand) in done_items(payload) {
            self.0.finished(id, demand);
        }
    }

    fn connected(&mut self) {
        self.0.wake_all();
    }

    /// Until the server stops, and while anyone else holds the waiters (a runtime that drops a
    /// server never stopped, in a test, waits for the listener's thread: it must end then).
    fn wanted(&self) -> bool {
        !self.0.closed.load(Ordering::Acquire) && Arc::strong_count(&self.0) > 1
    }
}

/// The `wait` a request prefers (RFC 7240: `Prefer: wait=10`, among other preferences, in one
/// or several `Prefer` headers), in whole seconds; `None` when it asks none or its value does not
/// read (an unreadable preference is ignored, as the RFC says).
pub fn preferred_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(PREFER)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .find_map(|preference| {
            let preference = preference.split(';').next().unwrap_or_default().trim();
            let (name, value) = preference.split_once('=')?;
            if !name.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            let value = value.trim().trim_matches('"');
            if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            value.parse().ok()
        })
}

/// How long requests may wait, and how many at once.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitConfig {
    /// Longest `Prefer: wait` honoured (an hour at most); a longer one waits this long.
    #[arg(
        long = "wait-max",
        env = "PP_WAIT_MAX",
        default_value = "60s",
        value_parser = wait_max_setting
    )]
    pub max: Duration,
    /// Most requests that may wait at once (`Prefer: wait`); past it, 503 with Retry-After.
    #[arg(long = "waiters-max", env = "PP_WAITERS_MAX", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub waiters: u32,
}

/// The longest wait honoured: a duration of an hour at most (a proxy in front, or a client,
/// gives up long before a longer one would end).
fn wait_max_setting(text: &str) -> Result<Duration, String> {
    let wait = pp_lib::config::duration_setting(text)?;
    if wait > Duration::from_secs(3_600) {
        return Err(format!("`{text}` is too long a wait: an hour at most"));
    }
    Ok(wait)
}

/// Looks at something until `look` says it is final, or for `wait` at most, woken whenever
/// the work `awaited` names is finished: what `look` saw last. `look` runs once more after
/// each wake-up; registering comes before each look, so a work finished in between still
/// wakes the request.
pub async fn wait_until<T, F, Fut>(
    waiters: &Arc<Waiters>,
    awaited: Awaited,
    wait: Duration,
    mut look: F,
) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(T, bool), ApiError>>,
{
    let deadline = Instant::now() + wait;
    loop {
        let waiting = match waiters.wait_for(awaited) {
            Ok(waiting) => Some(waiting),
            Err(Refusal::Full(most)) => return Err(ApiError::TooManyWaiting(most)),
            Err(Refusal::Closed) => None,
        };
        let (seen, last) = look().await?;
        let left = deadline.saturating_duration_since(Instant::now());
        match waiting {
            Some(mut waiting) if !last && !left.is_zero() => {
                waiting.woken_within(left).await;
            }
            _ => return Ok(seen),
        }
    }
}

/// The `Preference-Applied` value for a wait of `seconds`.
pub fn applied(seconds: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("wait={seconds}"))
        .expect("wait=<digits> is a valid header value")
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderName;

    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                HeaderName::from_static(PREFER),
                HeaderValue::from_str(value).expect("a header value"),
            );
        }
        headers
    }

    #[test]
    fn the_wait_is_read_among_other_preferences() {
        let cases: [(&[&str], Option<u64>); 10] = [
            (&[], None),
            (&["wait=10"], Some(10)),
            (&["respond-async, wait=3"], Some(3)),
            (&["return=minimal", "Wait = 5"], Some(5)),
            (&["wait=\"7\""], Some(7)),
            (&["wait=2;foo=bar"], Some(2)),
            (&["wait=-1"], None),
            (&["wait=abc"], None),
            (&["wait=99999999999999"], None),
            (&["handling=lenient"], None),
        ];
        for (values, expected) in cases {
            assert_eq!(preferred_wait(&headers(values)), expected, "{values:?}");
        }
    }

    #[test]
    fn the_longest_wait_is_an_hour_at_most() {
        assert_eq!(wait_max_setting("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(wait_max_setting("1h"), Ok(Duration::from_secs(3_600)));
        assert!(wait_max_setting("2h").is_err());
        assert!(wait_max_setting("forever").is_err());
    }

    #[tokio::test]
    async fn a_finished_work_wakes_its_waiters_and_only_them() {
        let waiters = Waiters::new(10);
        let demand = Uuid::new_v4();
        let mut work = waiters.wait_for(Awaited::Work(7)).expect("room");
        let mut by_demand = waiters.wait_for(Awaited::Demand(demand)).expect("room");
        let mut other = waiters.wait_for(Awaited::Work(8)).expect("room");
        assert_eq!(waiters.count(), 3);
        WakeWaiters(waiters.clone()).heard(&format!("7,9/{demand}"));
        assert!(work.woken_within(Duration::from_secs(5)).await);
        assert!(by_demand.woken_within(Duration::from_secs(5)).await);
        assert!(!other.woken_within(Duration::from_millis(10)).await);
        assert_eq!(waiters.count(), 1);
        drop(other);
        assert_eq!(waiters.count(), 0, "a request gone leaves nothing behind");
    }

    #[tokio::test]
    async fn past_the_most_a_request_is_refused_and_after_the_close_none_waits() {
        let waiters = Waiters::new(1);
        let mut first = waiters.wait_for(Awaited::Work(1)).expect("room");
        assert_eq!(
            waiters.wait_for(Awaited::Work(2)).err(),
            Some(Refusal::Full(1))
        );
        waiters.close();
        assert!(first.woken_within(Duration::from_secs(5)).await);
        assert_eq!(
            waiters.wait_for(Awaited::Work(3)).err(),
            Some(Refusal::Closed)
        );
        assert!(!WakeWaiters(waiters.clone()).wanted());
    }
}
