//! Single use of front-B tokens on one replica (pure: the caller passes the time).
//!
//! A token's `jti` is remembered from its first accepted use until the token could no longer
//! pass [`verify_token`](super::verify_token) (`exp` plus the clock skew); a second use in that
//! time is `replayed`. Memory is bounded: entries are 32-byte digests of (remote, `jti`), at
//! most `capacity` of them. When full, new tokens are refused (`replay_cache_full`) rather
//! than an entry dropped early: evicting would reopen a replay window for a token still alive,
//! and filling the cache needs that many genuinely signed, unexpired tokens, which only the
//! issuer can mint. Size it above the peak number of tokens issued per token lifetime.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use sha2::{Digest, Sha256};

/// Default number of remembered tokens: about 11 MB when full (a 41-byte map slot and a
/// 40-byte expiry entry per token, table and heap rounded up to powers of two).
pub(crate) const DEFAULT_REPLAY_CACHE_ENTRIES: usize = 100_000;

/// Why a token was not admitted by the replay cache.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReplayError {
    #[error("token id already used on this replica (remembered until {forget_at})")]
    Replayed { forget_at: u64 },
    #[error("replay cache full ({capacity} live tokens): refusing new tokens until some expire")]
    Full { capacity: usize },
}

impl ReplayError {
    /// Every label [`ReplayError::reason`] gives.
    pub(crate) const REASONS: [&'static str; 2] = ["replayed", "replay_cache_full"];

    /// Stable `snake_case` label for metrics (bounded cardinality).
    #[must_use]
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Replayed { .. } => "replayed",
            Self::Full { .. } => "replay_cache_full",
        }
    }
}

type Key = [u8; 32];

/// The `jti`s seen on this replica whose tokens are still alive.
#[derive(Debug)]
pub struct ReplayCache {
    /// Digest of (remote, jti) → when it may be forgotten (seconds since the epoch).
    seen: HashMap<Key, u64>,
    /// The same entries ordered by that time, earliest first, to drop them in order.
    by_expiry: BinaryHeap<Reverse<(u64, Key)>>,
    capacity: usize,
}

impl ReplayCache {
    #[must_use]
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            seen: HashMap::new(),
            by_expiry: BinaryHeap::new(),
            capacity,
        }
    }

    /// A reload may change the size; entries already held stay (a smaller size refuses new
    /// tokens until enough expire).
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    /// Live entries.
    #[cfg(test)]
    #[must_use]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    #[cfg(test)]
    #[must_use]
    pub(crate) fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records the first use of `remote`'s token `jti`, remembered while `now < forget_at`
    /// (the token's `exp` plus the clock skew the verifier allows).
    ///
    /// # Errors
    /// [`ReplayError::Replayed`] if it was used before and is still remembered;
    /// [`ReplayError::Full`] if `capacity` live tokens are held.
    pub(crate) fn check_and_record(
        &mut self,
        remote: &str,
        jti: &str,
        forget_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        self.forget_expired(now);
        let key = digest(remote, jti);
        if let Some(&forget_at) = self.seen.get(&key) {
            return Err(ReplayError::Replayed { forget_at });
        }
        if self.seen.len() >= self.capacity {
            return Err(ReplayError::Full {
                capacity: self.capacity,
            });
        }
        if forget_at > now {
            self.seen.insert(key, forget_at);
            self.by_expiry.push(Reverse((forget_at, key)));
        }
        Ok(())
    }

    fn forget_expired(&mut self, now: u64) {
        while let Some(Reverse((at, key))) = self.by_expiry.peek() {
            if *at > now {
                break;
            }
            self.seen.remove(key);
            self.by_expiry.pop();
        }
    }
}

/// Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
fn digest(remote: &str, jti: &str) -> Key {
    let mut h = Sha256::new();
    h.update((remote.len() as u64).to_be_bytes());
    h.update(remote.as_bytes());
    h.update(jti.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn a_second_use_within_the_lifetime_is_replayed() {
        let mut c = ReplayCache::new(10);
        assert_eq!(c.check_and_record("default", "j1", T0 + 660, T0), Ok(()));
        assert_eq!(
            c.check_and_record("default", "j1", T0 + 660, T0 + 30),
            Err(ReplayError::Replayed {
                forget_at: T0 + 660
            })
        );
        assert_eq!(
            c.check_and_record("default", "j1", T0 + 660, T0 + 30)
                .unwrap_err()
                .reason(),
            "replayed"
        );
        // Another id, or the same id from another remote, is a different token.
        assert_eq!(
            c.check_and_record("default", "j2", T0 + 660, T0 + 30),
            Ok(())
        );
        assert_eq!(
            c.check_and_record("tenant-b", "j1", T0 + 660, T0 + 30),
            Ok(())
        );
        assert_eq!(
            c.check_and_record("defaul", "tj1", T0 + 660, T0 + 30),
            Ok(())
        );
    }

    #[test]
    fn entries_are_forgotten_once_their_token_is_dead() {
        let mut c = ReplayCache::new(10);
        c.check_and_record("r", "a", T0 + 100, T0).unwrap();
        c.check_and_record("r", "b", T0 + 200, T0).unwrap();
        assert_eq!(c.len(), 2);
        // Still remembered one second before.
        assert!(c.check_and_record("r", "a", T0 + 100, T0 + 99).is_err());
        // At forget_at the verifier refuses the token anyway; the entry goes.
        c.check_and_record("r", "c", T0 + 300, T0 + 100).unwrap();
        assert_eq!(c.len(), 2, "a was not forgotten");
        c.check_and_record("r", "d", T0 + 300, T0 + 250).unwrap();
        assert_eq!(c.len(), 2, "b was not forgotten");
        assert!(!c.is_empty());
    }

    #[test]
    fn a_full_cache_refuses_new_tokens_and_keeps_the_old_ones() {
        let mut c = ReplayCache::new(2);
        c.check_and_record("r", "a", T0 + 100, T0).unwrap();
        c.check_and_record("r", "b", T0 + 100, T0).unwrap();
        let full = c.check_and_record("r", "c", T0 + 100, T0 + 1).unwrap_err();
        assert_eq!(full, ReplayError::Full { capacity: 2 });
        assert_eq!(full.reason(), "replay_cache_full");
        // Nothing was evicted: the held tokens are still single use.
        assert!(matches!(
            c.check_and_record("r", "a", T0 + 100, T0 + 1),
            Err(ReplayError::Replayed { .. })
        ));
        // Room again once they expire.
        assert_eq!(c.check_and_record("r", "c", T0 + 200, T0 + 100), Ok(()));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_smaller_capacity_after_a_reload_refuses_until_entries_expire() {
        let mut c = ReplayCache::new(3);
        for j in ["a", "b", "c"] {
            c.check_and_record("r", j, T0 + 100, T0).unwrap();
        }
        c.set_capacity(1);
        assert!(matches!(
            c.check_and_record("r", "d", T0 + 100, T0),
            Err(ReplayError::Full { capacity: 1 })
        ));
        assert_eq!(c.check_and_record("r", "d", T0 + 200, T0 + 100), Ok(()));
    }

    #[test]
    fn an_already_dead_token_is_not_stored() {
        let mut c = ReplayCache::new(1);
        assert_eq!(c.check_and_record("r", "a", T0, T0), Ok(()));
        assert!(c.is_empty());
    }
}
