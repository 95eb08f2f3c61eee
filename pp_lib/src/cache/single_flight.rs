//! Single-flight: concurrent requests for the same key share one load.
//!
//! The first caller for a key starts the load as a task of its own (so the load finishes, and
//! its followers get their answer, even if that first caller goes away); callers that arrive
//! while it runs wait for its result instead of loading again. Once it has answered, the next
//! caller loads afresh: nothing is kept.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

type Waiters<V> = Vec<oneshot::Sender<V>>;

/// See the module documentation.
pub struct SingleFlight<K, V> {
    in_flight: Arc<Mutex<HashMap<K, Waiters<V>>>>,
}

impl<K, V> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight {
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl<K, V> SingleFlight<K, V>
where
    K: Eq + Hash + Clone + Send + 'static,
    V: Clone + Send + 'static,
{
    pub fn new() -> Self {
        Self::default()
    }

    /// `load()`'s answer for `key`, shared with every caller that asks while it runs. A load
    /// that panics answers nobody: each of its callers then loads by itself.
    pub async fn run<F, Fut>(&self, key: K, load: F) -> V
    where
        F: Fn() -> Fut,
        Fut: Future<Output = V> + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let leader = {
            let mut in_flight = lock(&self.in_flight);
            match in_flight.get_mut(&key) {
                Some(waiters) => {
                    waiters.push(sender);
                    false
                }
                None => {
                    in_flight.insert(key.clone(), vec![sender]);
                    true
                }
            }
        };
        if leader {
            let in_flight = self.in_flight.clone();
            let future = load();
            tokio::spawn(async move {
                // Take the entry out whatever happens, so a panicking load cannot leave it behind.
                let guard = Departure {
                    in_flight: &in_flight,
                    key: Some(key),
                };
                let value = future.await;
                for waiter in guard.leave() {
                    let _ = waiter.send(value.clone());
                }
            });
            match receiver.await {
                Ok(value) => value,
                // The load panicked (the runtime reported it): load again, by ourselves.
                Err(_) => load().await,
            }
        } else {
            match receiver.await {
                Ok(value) => value,
                Err(_) => load().await,
            }
        }
    }

    /// Loads under way (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        lock(&self.in_flight).len()
    }
}

fn lock<K, V>(
    map: &Mutex<HashMap<K, Waiters<V>>>,
) -> std::sync::MutexGuard<'_, HashMap<K, Waiters<V>>> {
    // A map of channels, valid after any panic that interrupted its holder.
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Removes the key's entry when the load ends or unwinds.
struct Departure<'a, K: Eq + Hash, V> {
    in_flight: &'a Mutex<HashMap<K, Waiters<V>>>,
    key: Option<K>,
}

impl<K: Eq + Hash, V> Departure<'_, K, V> {
    fn leave(mut self) -> Waiters<V> {
        match self.key.take() {
            Some(key) => lock(self.in_flight).remove(&key).unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

impl<K: Eq + Hash, V> Drop for Departure<'_, K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(self.in_flight).remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let flight: Arc<SingleFlight<i64, usize>> = Arc::new(SingleFlight::new());
        let loads = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let mut callers = Vec::new();
        for _ in 0..10 {
            let flight = flight.clone();
            let loads = loads.clone();
            let released = released.clone();
            callers.push(tokio::spawn(async move {
                flight
                    .run(7, move || {
                        let (mut released, loads) = (released.clone(), loads.clone());
                        async move {
                            let _ = released.wait_for(|go| *go).await;
                            loads.fetch_add(1, Ordering::SeqCst) + 1
                        }
                    })
                    .await
            }));
        }
        // Every caller is waiting on the one load before it may finish.
        while lock(&flight.in_flight).get(&7).map_or(0, Vec::len) < 10 {
            tokio::task::yield_now().await;
        }
        release.send(true).expect("the load listens");
        for caller in callers {
            assert_eq!(caller.await.expect("caller"), 1);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(flight.in_flight(), 0, "nothing is kept");
    }

    #[tokio::test]
    async fn a_load_whose_first_caller_left_still_answers_the_others() {
        let flight: Arc<SingleFlight<i64, &'static str>> = Arc::new(SingleFlight::new());
        let (release, released) = tokio::sync::watch::channel(false);
        let first = {
            let flight = flight.clone();
            let released = released.clone();
            tokio::spawn(async move {
                flight
                    .run(1, move || {
                        let mut released = released.clone();
                        async move {
                            let _ = released.wait_for(|go| *go).await;
                            "loaded"
                        }
                    })
                    .await
            })
        };
        while flight.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
        let second = {
            let flight = flight.clone();
            tokio::spawn(async move { flight.run(1, || async { "loaded again" }).await })
        };
        while lock(&flight.in_flight).get(&1).map_or(0, Vec::len) < 2 {
            tokio::task::yield_now().await;
        }
        first.abort();
        release.send(true).expect("the load listens");
        assert_eq!(second.await.expect("second"), "loaded");
    }

    #[tokio::test]
    async fn a_caller_whose_load_panicked_loads_again_instead_of_waiting_forever() {
        let flight: SingleFlight<i64, &'static str> = SingleFlight::new();
        let loads = AtomicUsize::new(0);
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            flight.run(3, || {
                let first = loads.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    assert!(!first, "the first load fails");
                    "loaded"
                }
            }),
        )
        .await
        .expect("answered, not left waiting");
        assert_eq!(answer, "loaded");
        assert_eq!(flight.in_flight(), 0, "nothing is kept");
    }
}
