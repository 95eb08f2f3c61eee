//! A bounded in-process map for values that never change (done works): two generations, so the
//! entries used recently survive and the memory stays bounded without a list to maintain.
//!
//! Inserts go to the young generation. When it holds `capacity` entries, the old generation is
//! dropped and the young one becomes old. A hit in the old generation is moved back into the
//! young one, so whatever is read at least once per `capacity` inserts stays: a working set of up
//! to `capacity` entries is held whole, and never churns. At most `2 × capacity` entries are
//! held (the old generation ages out as the young one fills).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// See the module documentation.
pub struct LocalCache<K, V> {
    generations: Mutex<Generations<K, V>>,
    capacity: usize,
}

struct Generations<K, V> {
    young: HashMap<K, V>,
    old: HashMap<K, V>,
}

impl<K: Eq + Hash + Clone, V: Clone> LocalCache<K, V> {
    /// A cache that keeps the `capacity` entries used last (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        LocalCache {
            generations: Mutex::new(Generations {
                young: HashMap::with_capacity(capacity.min(4096)),
                old: HashMap::new(),
            }),
            capacity,
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let mut generations = self.lock();
        if let Some(value) = generations.young.get(key) {
            return Some(value.clone());
        }
        let value = generations.old.remove(key)?;
        generations.insert(key.clone(), value.clone(), self.capacity);
        Some(value)
    }

    pub fn insert(&self, key: K, value: V) {
        self.lock().insert(key, value, self.capacity);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        let generations = self.lock();
        generations.young.len() + generations.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations<K, V>> {
        // Two maps, each valid after any panic that interrupted their holder.
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<K: Eq + Hash, V> Generations<K, V> {
    fn insert(&mut self, key: K, value: V, capacity: usize) {
        if self.young.len() >= capacity && !self.young.contains_key(&key) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_twice_its_capacity() {
        let cache = LocalCache::new(10);
        for key in 0..1000 {
            cache.insert(key, key * 2);
            assert!(cache.len() <= 20, "{} entries after {key}", cache.len());
        }
        assert_eq!(cache.get(&999), Some(1998));
        assert_eq!(cache.get(&0), None, "the oldest entries are gone");
    }

    #[test]
    fn a_working_set_as_large_as_the_capacity_stays_whole() {
        let cache = LocalCache::new(100);
        for key in 0..100 {
            cache.insert(key, key);
        }
        // Read in an order that keeps moving entries between the generations.
        for round in 0..10 {
            for key in (0..100).rev() {
                assert_eq!(cache.get(&key), Some(key), "round {round}, key {key}");
            }
        }
    }

    #[test]
    fn entries_read_recently_survive_a_stream_of_inserts() {
        let cache = LocalCache::new(10);
        cache.insert(-1, -1);
        for key in 0..100 {
            cache.insert(key, key);
            assert_eq!(cache.get(&-1), Some(-1), "after inserting {key}");
        }
    }
}
