//! Latency percentiles and error tallies: pure, so the report's arithmetic is unit tested.

use std::collections::BTreeMap;
use std::time::Duration;

/// Latencies of one run, in the order they were recorded.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<Duration>);

/// p50 / p99 / max, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank percentiles; `None` without samples.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.0.is_empty() {
            return None;
        }
        let mut sorted = self.0.clone();
        sorted.sort();
        let rank = |p: f64| {
            let n = sorted.len();
            let i = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            sorted[i].as_secs_f64() * 1000.0
        };
        Some(Percentiles {
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: rank(1.0),
        })
    }
}

/// Failures by kind (bounded set of kinds, chosen by the caller).
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct Errors(BTreeMap<&'static str, u64>);

impl Errors {
    pub fn count(&mut self, kind: &'static str) {
        self.add(kind, 1);
    }

    /// Counts `n` failures of `kind` (none: no entry).
    pub fn add(&mut self, kind: &'static str, n: u64) {
        if n > 0 {
            *self.0.entry(kind).or_default() += n;
        }
    }

    pub fn merge(&mut self, other: Errors) {
        for (k, v) in other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

/// "connect 3, timeout 1": what failed, for the summary line (empty when nothing did).
impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k} {v}")).collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed() {
        let mut e = Errors::default();
        assert_eq!(e.to_string(), "");
        e.count("timeout");
        e.add("connect", 3);
        e.add("auth", 0);
        assert_eq!(e.to_string(), "connect 3, timeout 1");
        assert_eq!(e.total(), 4);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        assert_eq!(l.percentiles(), None);
        for ms in 1..=100 {
            l.record(Duration::from_millis(ms));
        }
        let p = l.percentiles().unwrap();
        assert_eq!((p.p50_ms, p.p99_ms, p.max_ms), (50.0, 99.0, 100.0));
        let mut one = Latencies::default();
        one.record(Duration::from_millis(7));
        let p = one.percentiles().unwrap();
        assert_eq!((p.p50_ms, p.p99_ms, p.max_ms), (7.0, 7.0, 7.0));
    }

    #[test]
    fn errors_merge_by_kind() {
        let mut a = Errors::default();
        a.count("connect");
        let mut b = Errors::default();
        b.count("connect");
        b.count("auth");
        a.merge(b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.0.get("connect"), Some(&2));
    }
}
