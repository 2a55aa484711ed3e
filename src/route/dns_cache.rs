//! The backend-name cache, pure: the clock is an argument.
//!
//! - A positive answer is fresh until its TTL runs out (capped at `max_ttl`).
//! - After that it is *stale*: the caller asks DNS again, and if DNS fails (not "no such
//!   name", a real failure: timeout, refused) it may still use the stale answer for up to
//!   `stale_for`, so a DNS outage does not break workloads that were reachable a moment ago.
//! - "No such name" is remembered for `negative_ttl`, so a mistyped host cannot make every
//!   retry a query.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the cache knows about a key at some instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached<V> {
    /// Within its TTL.
    Fresh(V),
    /// Past its TTL, but within the stale window: ask again, fall back to this on failure.
    Stale(V),
    /// Known not to exist, within the negative TTL.
    Missing,
    /// Nothing usable.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub max_ttl: Duration,
    pub negative_ttl: Duration,
    pub stale_for: Duration,
    /// Entries kept at most; the oldest-expiring make room.
    pub capacity: usize,
}

#[derive(Debug)]
enum Entry<V> {
    Positive { value: V, fresh_until: Instant },
    Negative { until: Instant },
}

#[derive(Debug)]
pub(crate) struct DnsCache<V> {
    settings: CacheSettings,
    entries: HashMap<String, Entry<V>>,
}

impl<V: Clone> DnsCache<V> {
    pub(crate) fn new(settings: CacheSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, key: &str, now: Instant) -> Cached<V> {
        match self.entries.get(key) {
            Some(Entry::Positive { value, fresh_until }) => {
                if now < *fresh_until {
                    Cached::Fresh(value.clone())
                } else if now < *fresh_until + self.settings.stale_for {
                    Cached::Stale(value.clone())
                } else {
                    Cached::Unknown
                }
            }
            Some(Entry::Negative { until }) if now < *until => Cached::Missing,
            _ => Cached::Unknown,
        }
    }

    /// Remembers an answer valid for `ttl` (capped at `max_ttl`).
    pub(crate) fn put(&mut self, key: &str, value: V, ttl: Duration, now: Instant) {
        let ttl = ttl.min(self.settings.max_ttl);
        self.make_room(now);
        self.entries.insert(
            key.to_string(),
            Entry::Positive {
                value,
                fresh_until: now + ttl,
            },
        );
    }

    /// Remembers that `key` does not exist.
    pub(crate) fn put_missing(&mut self, key: &str, now: Instant) {
        self.make_room(now);
        self.entries.insert(
            key.to_string(),
            Entry::Negative {
                until: now + self.settings.negative_ttl,
            },
        );
    }

    /// Drops dead entries; if still full, the one that stops being useful first.
    fn make_room(&mut self, now: Instant) {
        if self.entries.len() < self.settings.capacity {
            return;
        }
        let stale_for = self.settings.stale_for;
        let useful_until = |e: &Entry<V>| match e {
            Entry::Positive { fresh_until, .. } => *fresh_until + stale_for,
            Entry::Negative { until } => *until,
        };
        self.entries.retain(|_, e| useful_until(e) > now);
        while self.entries.len() >= self.settings.capacity.max(1) {
            let Some(first) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| useful_until(e))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.entries.remove(&first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> DnsCache<u32> {
        DnsCache::new(CacheSettings {
            max_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            stale_for: Duration::from_secs(300),
            capacity: 3,
        })
    }

    #[test]
    fn answers_are_fresh_for_their_ttl_then_stale_then_gone() {
        let mut c = cache();
        let t0 = Instant::now();
        c.put("a", 1, Duration::from_secs(10), t0);
        assert_eq!(c.get("a", t0 + Duration::from_secs(9)), Cached::Fresh(1));
        assert_eq!(c.get("a", t0 + Duration::from_secs(10)), Cached::Stale(1));
        assert_eq!(c.get("a", t0 + Duration::from_secs(309)), Cached::Stale(1));
        assert_eq!(c.get("a", t0 + Duration::from_secs(310)), Cached::Unknown);
        assert_eq!(c.get("b", t0), Cached::Unknown);
    }

    #[test]
    fn ttls_are_capped() {
        let mut c = cache();
        let t0 = Instant::now();
        c.put("a", 1, Duration::from_secs(86_400), t0);
        assert_eq!(c.get("a", t0 + Duration::from_secs(61)), Cached::Stale(1));
    }

    #[test]
    fn missing_names_are_remembered_briefly() {
        let mut c = cache();
        let t0 = Instant::now();
        c.put_missing("typo", t0);
        assert_eq!(c.get("typo", t0 + Duration::from_secs(4)), Cached::Missing);
        assert_eq!(c.get("typo", t0 + Duration::from_secs(5)), Cached::Unknown);
        // A later answer replaces it.
        c.put(
            "typo",
            7,
            Duration::from_secs(10),
            t0 + Duration::from_secs(6),
        );
        assert_eq!(c.get("typo", t0 + Duration::from_secs(7)), Cached::Fresh(7));
    }

    #[test]
    fn a_full_cache_drops_what_stops_being_useful_first() {
        let mut c = cache();
        let t0 = Instant::now();
        c.put_missing("soon", t0);
        c.put("later", 2, Duration::from_secs(30), t0);
        c.put("latest", 3, Duration::from_secs(60), t0);
        c.put("new", 4, Duration::from_secs(60), t0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get("soon", t0), Cached::Unknown);
        assert_eq!(c.get("later", t0), Cached::Fresh(2));
        assert_eq!(c.get("new", t0), Cached::Fresh(4));
    }
}
