//! Pre-authentication limits, after OpenSSH's `MaxStartups`, `PerSourceMaxStartups` and
//! `PerSourcePenalties`. Pure: the clock and the dice are arguments, so every rule is unit
//! tested without sockets or sleeps.
//!
//! - **Global:** at most `full` unauthenticated connections. From `start` on, a new one is
//!   dropped with a probability rising linearly from `drop_percent`% to 100% at `full`
//!   (random early drop), so a flood degrades service gradually instead of at a cliff.
//!   Unlike OpenSSH's `MaxStartups`, the early drop spares a source holding less than its fair
//!   share of the band (`start` / sources with something pending): a flood from a few sources
//!   fills the band with its own connections, and those are what gets dropped, while users
//!   (and offices behind one NAT) logging in a few at a time still land. Only the hard `full`
//!   cap applies to everyone. With very many sources the share falls below one and everyone
//!   takes the dice, as with OpenSSH; so does every connection when sources are not tracked.
//! - **Per source** (an address, or its network block: IPv4 /32 and IPv6 /64 by default, as
//!   one IPv6 host usually owns a /64): at most `per_source_max` unauthenticated connections,
//!   and a connection rate of `per_source_rate` per second with bursts of `per_source_burst`
//!   (token bucket). Every attempt spends a token, refused ones included.
//!
//! A slot is held by a permit until the connection authenticates or ends.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use dashmap::DashMap;

use crate::reject::Reason;

/// Sources tracked at most; past this, new sources get only the global cap (memory stays
/// bounded under a flood from very many addresses).
pub(crate) const MAX_TRACKED_SOURCES: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitSettings {
    /// Unauthenticated connections before random early drop starts (0 = no global cap).
    pub start: usize,
    /// Drop probability at `start`, percent.
    pub drop_percent: u8,
    /// Unauthenticated connections at which every new one is dropped.
    pub full: usize,
    /// Unauthenticated connections per source (0 = no cap).
    pub per_source_max: usize,
    /// New connections per second per source, sustained (0 = no rate limit).
    pub per_source_rate: f64,
    /// Bucket size: connections a source may open at once.
    pub per_source_burst: f64,
    /// Network block that counts as one IPv4 source.
    pub ipv4_prefix: u8,
    /// Network block that counts as one IPv6 source.
    pub ipv6_prefix: u8,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            start: 256,
            drop_percent: 30,
            full: 1024,
            per_source_max: 32,
            per_source_rate: 10.0,
            per_source_burst: 40.0,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        }
    }
}

/// One source's state.
#[derive(Debug)]
struct Source {
    unauthenticated: usize,
    tokens: f64,
    refilled: Instant,
}

/// The limits and their live counts, shared by every listener.
#[derive(Debug)]
pub(crate) struct PreauthLimits {
    settings: LimitSettings,
    unauthenticated: AtomicUsize,
    /// Sources with at least one unauthenticated connection.
    active_sources: AtomicUsize,
    /// Mirrors `unauthenticated` for `/metrics`.
    gauge: prometheus::IntGauge,
    sources: DashMap<IpAddr, Source>,
}

/// Holds one global slot until dropped.
#[derive(Debug)]
pub(crate) struct GlobalPermit {
    limits: Arc<PreauthLimits>,
    /// Unauthenticated connections when this one arrived.
    held_before: usize,
}

impl GlobalPermit {
    /// Random early drop: whether this connection goes, given what its source already had
    /// pending (`None`: not tracked) and the dice (`roll` in 0..1).
    pub(crate) fn early_drop(&self, source_pending: Option<usize>, roll: f64) -> bool {
        if let Some(pending) = source_pending
            && pending < self.limits.fair_share()
        {
            return false;
        }
        roll < self.limits.drop_probability(self.held_before)
    }
}

impl Drop for GlobalPermit {
    fn drop(&mut self) {
        self.limits.unauthenticated.fetch_sub(1, Ordering::Relaxed);
        self.limits.gauge.dec();
    }
}

/// Holds one slot of a source until dropped (`None` inside: the source is not tracked).
#[derive(Debug)]
pub(crate) struct SourcePermit(Option<(Arc<PreauthLimits>, IpAddr, usize)>);

impl SourcePermit {
    /// Unauthenticated connections the source had pending before this one (`None`: the
    /// source is not tracked).
    pub(crate) fn pending_before(&self) -> Option<usize> {
        self.0.as_ref().map(|(_, _, n)| *n)
    }
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        if let Some((limits, key, _)) = &self.0
            && let Some(mut s) = limits.sources.get_mut(key)
        {
            s.unauthenticated = s.unauthenticated.saturating_sub(1);
            if s.unauthenticated == 0 {
                limits.active_sources.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// The network block `ip` belongs to, as the per-source key.
pub(crate) fn source_key(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> IpAddr {
    // An IPv4-mapped IPv6 address is the IPv4 host it maps.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(ipv4_prefix.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

impl PreauthLimits {
    /// `gauge` follows the number of unauthenticated connections.
    pub(crate) fn new(settings: LimitSettings, gauge: prometheus::IntGauge) -> Arc<Self> {
        Arc::new(Self {
            settings,
            unauthenticated: AtomicUsize::new(0),
            active_sources: AtomicUsize::new(0),
            gauge,
            sources: DashMap::new(),
        })
    }

    /// Unauthenticated connections holding a global slot now.
    pub(crate) fn unauthenticated(&self) -> usize {
        self.unauthenticated.load(Ordering::Relaxed)
    }

    /// The gauge that follows [`Self::unauthenticated`].
    pub(crate) fn gauge(&self) -> prometheus::IntGauge {
        self.gauge.clone()
    }

    /// Sources with state kept now.
    pub(crate) fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Pending connections a source may hold and still be spared the early drop: its share
    /// of the band below `start`, at least 1 (so a source with nothing pending is spared as
    /// long as fewer than `start` sources are active).
    pub(crate) fn fair_share(&self) -> usize {
        let active = self.active_sources.load(Ordering::Relaxed).max(1);
        (self.settings.start / active).max(usize::from(active <= self.settings.start))
    }

    /// The probability (0..=1) that a connection arriving with `held` unauthenticated ones
    /// already open is dropped.
    pub(crate) fn drop_probability(&self, held: usize) -> f64 {
        let s = &self.settings;
        if s.full == 0 && s.start == 0 {
            return 0.0;
        }
        if held >= s.full {
            return 1.0;
        }
        if held < s.start {
            return 0.0;
        }
        let span = (s.full - s.start).max(1) as f64;
        let base = f64::from(s.drop_percent.min(100)) / 100.0;
        base + (1.0 - base) * (held - s.start) as f64 / span
    }

    /// A global slot, unless the hard cap is reached. The permit remembers how many were
    /// held before it, for [`GlobalPermit::early_drop`].
    pub(crate) fn admit_global(self: &Arc<Self>) -> Result<GlobalPermit, Reason> {
        let held = self.unauthenticated.fetch_add(1, Ordering::Relaxed);
        self.gauge.inc();
        let permit = GlobalPermit {
            limits: self.clone(),
            held_before: held,
        };
        let s = &self.settings;
        if (s.full > 0 || s.start > 0) && held >= s.full {
            return Err(Reason::PreauthFull);
        }
        Ok(permit)
    }

    /// A slot of `ip`'s source at `now`, unless its rate or its cap says drop.
    pub(crate) fn admit_source(
        self: &Arc<Self>,
        ip: IpAddr,
        now: Instant,
    ) -> Result<SourcePermit, Reason> {
        let s = &self.settings;
        if s.per_source_max == 0 && s.per_source_rate <= 0.0 {
            return Ok(SourcePermit(None));
        }
        let key = source_key(ip, s.ipv4_prefix, s.ipv6_prefix);
        if !self.sources.contains_key(&key) && self.sources.len() >= MAX_TRACKED_SOURCES {
            return Ok(SourcePermit(None));
        }
        let mut source = self.sources.entry(key).or_insert_with(|| Source {
            unauthenticated: 0,
            tokens: s.per_source_burst.max(1.0),
            refilled: now,
        });
        if s.per_source_rate > 0.0 {
            let elapsed = now.saturating_duration_since(source.refilled).as_secs_f64();
            source.tokens =
                (source.tokens + elapsed * s.per_source_rate).min(s.per_source_burst.max(1.0));
            source.refilled = now;
            if source.tokens < 1.0 {
                return Err(Reason::Rate);
            }
            source.tokens -= 1.0;
        }
        if s.per_source_max > 0 && source.unauthenticated >= s.per_source_max {
            return Err(Reason::PerSource);
        }
        let pending = source.unauthenticated;
        if pending == 0 {
            self.active_sources.fetch_add(1, Ordering::Relaxed);
        }
        source.unauthenticated += 1;
        Ok(SourcePermit(Some((self.clone(), key, pending))))
    }

    /// Forgets sources with nothing open and a full bucket; returns how many remain.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let s = self.settings;
        self.sources.retain(|_, src| {
            let elapsed = now.saturating_duration_since(src.refilled).as_secs_f64();
            let full = s.per_source_rate <= 0.0
                || src.tokens + elapsed * s.per_source_rate >= s.per_source_burst.max(1.0);
            src.unauthenticated > 0 || !full
        });
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(f: impl FnOnce(&mut LimitSettings)) -> Arc<PreauthLimits> {
        let mut s = LimitSettings {
            start: 0,
            drop_percent: 30,
            full: 0,
            per_source_max: 0,
            per_source_rate: 0.0,
            per_source_burst: 1.0,
            ipv4_prefix: 32,
            ipv6_prefix: 64,
        };
        f(&mut s);
        PreauthLimits::new(s, prometheus::IntGauge::new("g", "test gauge").unwrap())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn random_early_drop_rises_from_start_to_full() {
        let l = limits(|s| {
            s.start = 10;
            s.full = 100;
        });
        assert_eq!(l.drop_probability(0), 0.0);
        assert_eq!(l.drop_probability(9), 0.0);
        assert!((l.drop_probability(10) - 0.30).abs() < 1e-9);
        assert!((l.drop_probability(55) - 0.65).abs() < 1e-9);
        assert_eq!(l.drop_probability(100), 1.0);
        assert_eq!(l.drop_probability(5000), 1.0);
    }

    #[test]
    fn the_global_cap_holds_slots_until_permits_drop() {
        let l = limits(|s| {
            s.start = 3;
            s.full = 3;
        });
        let held: Vec<_> = (0..3).map(|_| l.admit_global().unwrap()).collect();
        assert_eq!(l.unauthenticated(), 3);
        assert_eq!(l.gauge.get(), 3);
        // Full: dropped whatever the source, and the refusal holds no slot.
        assert_eq!(l.admit_global().unwrap_err(), Reason::PreauthFull);
        assert_eq!(l.unauthenticated(), 3);
        drop(held);
        assert_eq!(l.unauthenticated(), 0);
        assert_eq!(l.gauge.get(), 0);
        assert!(l.admit_global().is_ok());
    }

    #[test]
    fn early_drop_spares_sources_under_their_fair_share() {
        let l = limits(|s| {
            s.start = 4;
            s.full = 100;
            s.per_source_max = 100;
        });
        let now = Instant::now();
        let flood = ip("127.0.1.1");
        // The flood holds 4: it is the one active source, its share is 4.
        let mut held: Vec<_> = (0..4)
            .map(|_| {
                (
                    l.admit_global().unwrap(),
                    l.admit_source(flood, now).unwrap(),
                )
            })
            .collect();
        assert_eq!(l.fair_share(), 4);
        // Its fifth takes the dice (held 4 = start: probability 0.30)...
        let g = l.admit_global().unwrap();
        let s = l.admit_source(flood, now).unwrap();
        assert_eq!(s.pending_before(), Some(4));
        assert!(g.early_drop(s.pending_before(), 0.29));
        assert!(!g.early_drop(s.pending_before(), 0.31));
        held.push((g, s));
        // ...a user with one pending is spared however bad the roll (two sources: share 2)...
        let user = ip("127.0.0.1");
        held.push((
            l.admit_global().unwrap(),
            l.admit_source(user, now).unwrap(),
        ));
        assert_eq!(l.fair_share(), 2);
        let g = l.admit_global().unwrap();
        let s = l.admit_source(user, now).unwrap();
        assert_eq!(s.pending_before(), Some(1));
        assert!(!g.early_drop(s.pending_before(), 0.0));
        // ...and everyone takes the dice when sources are not tracked.
        assert!(g.early_drop(None, 0.29));
        drop((g, s));
        drop(held);
        assert_eq!(l.fair_share(), 4, "active sources back to none");
    }

    #[test]
    fn with_more_sources_than_the_band_everyone_takes_the_dice() {
        let l = limits(|s| {
            s.start = 2;
            s.full = 100;
            s.per_source_max = 100;
        });
        let now = Instant::now();
        let held: Vec<_> = (1..=3)
            .map(|i| {
                let a = l.admit_global().unwrap();
                (a, l.admit_source(ip(&format!("10.0.0.{i}")), now).unwrap())
            })
            .collect();
        assert_eq!(l.fair_share(), 0);
        let g = l.admit_global().unwrap();
        assert!(g.early_drop(Some(0), 0.0));
        drop(held);
    }

    #[test]
    fn no_global_cap_when_unset() {
        let l = limits(|_| {});
        let held: Vec<_> = (0..1000).map(|_| l.admit_global().unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn per_source_cap_is_per_source() {
        let l = limits(|s| s.per_source_max = 2);
        let now = Instant::now();
        let a: Vec<_> = (0..2)
            .map(|_| l.admit_source(ip("127.0.0.1"), now).unwrap())
            .collect();
        assert_eq!(
            l.admit_source(ip("127.0.0.1"), now).unwrap_err(),
            Reason::PerSource
        );
        assert!(l.admit_source(ip("127.0.0.2"), now).is_ok());
        drop(a);
        assert!(l.admit_source(ip("127.0.0.1"), now).is_ok());
    }

    #[test]
    fn ipv6_hosts_of_one_slash_64_are_one_source() {
        let l = limits(|s| s.per_source_max = 1);
        let now = Instant::now();
        let _a = l.admit_source(ip("2001:db8::1"), now).unwrap();
        assert_eq!(
            l.admit_source(ip("2001:db8::ffff"), now).unwrap_err(),
            Reason::PerSource
        );
        assert!(l.admit_source(ip("2001:db8:0:1::1"), now).is_ok());
        // IPv4-mapped addresses count as their IPv4 host.
        let _b = l.admit_source(ip("192.0.2.1"), now).unwrap();
        assert_eq!(
            l.admit_source(ip("::ffff:192.0.2.1"), now).unwrap_err(),
            Reason::PerSource
        );
    }

    #[test]
    fn source_keys_mask_to_the_block() {
        assert_eq!(source_key(ip("10.1.2.3"), 24, 64), ip("10.1.2.0"));
        assert_eq!(source_key(ip("10.1.2.3"), 32, 64), ip("10.1.2.3"));
        assert_eq!(source_key(ip("10.1.2.3"), 0, 64), ip("0.0.0.0"));
        assert_eq!(source_key(ip("2001:db8::5"), 32, 128), ip("2001:db8::5"));
        assert_eq!(
            source_key(ip("2001:db8:1:2:3::5"), 32, 48),
            ip("2001:db8:1::")
        );
    }

    #[test]
    fn the_token_bucket_allows_bursts_then_the_rate() {
        let l = limits(|s| {
            s.per_source_rate = 2.0;
            s.per_source_burst = 3.0;
        });
        let t0 = Instant::now();
        let src = ip("127.0.0.1");
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(l.admit_source(src, t0).unwrap());
        }
        assert_eq!(l.admit_source(src, t0).unwrap_err(), Reason::Rate);
        // Half a second buys one more at 2/s.
        let t1 = t0 + Duration::from_millis(500);
        held.push(l.admit_source(src, t1).unwrap());
        assert_eq!(l.admit_source(src, t1).unwrap_err(), Reason::Rate);
        // Other sources have their own bucket.
        assert!(l.admit_source(ip("127.0.0.2"), t1).is_ok());
    }

    #[test]
    fn sweep_forgets_idle_sources_only() {
        let l = limits(|s| {
            s.per_source_max = 5;
            s.per_source_rate = 1.0;
            s.per_source_burst = 2.0;
        });
        let t0 = Instant::now();
        let held = l.admit_source(ip("127.0.0.1"), t0).unwrap();
        drop(l.admit_source(ip("127.0.0.2"), t0).unwrap());
        assert_eq!(l.tracked_sources(), 2);
        // .2 holds nothing but its bucket is not full yet.
        assert_eq!(l.sweep(t0), 2);
        // Later its bucket is full again: forgotten. .1 still holds a slot.
        assert_eq!(l.sweep(t0 + Duration::from_secs(5)), 1);
        drop(held);
        assert_eq!(l.sweep(t0 + Duration::from_secs(5)), 0);
    }
}
