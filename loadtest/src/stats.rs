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

/// Distinct reasons kept per kind; the rest are counted as "other", so a storm of unique
/// messages cannot grow the report without bound.
pub const MAX_REASONS: usize = 6;

/// One kind of failure: how many, why (short reasons with counts) and one full message, so a
/// reader can act on the summary without rerunning with logs.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ErrorDetail {
    pub count: u64,
    /// Short reason ("connection refused") → count; at most [`MAX_REASONS`] plus "other".
    pub reasons: BTreeMap<String, u64>,
    /// The first full message seen.
    pub example: String,
}

/// Failures by kind (bounded set of kinds, chosen by the caller), each with its reasons.
/// Serializes as `{kind: count}`; [`Errors::details`] carries the rest.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Errors(BTreeMap<&'static str, ErrorDetail>);

impl serde::Serialize for Errors {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, d)| (k, d.count)))
    }
}

impl Errors {
    /// Counts one failure of `kind`, with its short `reason` and full `message`.
    pub fn count(&mut self, kind: &'static str, reason: &str, message: &str) {
        let d = self.0.entry(kind).or_default();
        d.count += 1;
        if d.example.is_empty() {
            d.example = message.to_string();
        }
        let reason = if d.reasons.contains_key(reason) || d.reasons.len() < MAX_REASONS {
            reason
        } else {
            "other"
        };
        *d.reasons.entry(reason.to_string()).or_default() += 1;
    }

    /// Counts `n` failures of `kind` with no reason to tell them apart (none: no entry).
    pub fn add(&mut self, kind: &'static str, n: u64) {
        if n > 0 {
            self.0.entry(kind).or_default().count += n;
        }
    }

    pub fn merge(&mut self, other: Errors) {
        for (k, o) in other.0 {
            let d = self.0.entry(k).or_default();
            d.count += o.count;
            if d.example.is_empty() {
                d.example = o.example;
            }
            for (r, n) in o.reasons {
                let r = if d.reasons.contains_key(&r) || d.reasons.len() < MAX_REASONS {
                    r
                } else {
                    "other".to_string()
                };
                *d.reasons.entry(r).or_default() += n;
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().map(|d| d.count).sum()
    }

    /// Failures of `kind` (0 if none).
    pub fn get(&self, kind: &str) -> u64 {
        self.0.get(kind).map_or(0, |d| d.count)
    }

    pub fn details(&self) -> &BTreeMap<&'static str, ErrorDetail> {
        &self.0
    }
}

/// "connect 3 (connection refused ×3), timeout 1": what failed and why, for the summary line
/// (empty when nothing did). A reason that only repeats the kind is left out.
impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(k, d)| {
                let reasons: Vec<String> = d
                    .reasons
                    .iter()
                    .filter(|(r, _)| r.as_str() != *k)
                    .map(|(r, n)| format!("{r} ×{n}"))
                    .collect();
                if reasons.is_empty() {
                    format!("{k} {}", d.count)
                } else {
                    format!("{k} {} ({})", d.count, reasons.join(", "))
                }
            })
            .collect();
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed_and_why() {
        let mut e = Errors::default();
        assert_eq!(e.to_string(), "");
        e.count("timeout", "timeout", "timed out");
        for _ in 0..3 {
            e.count(
                "connect",
                "connection refused",
                "connect: Connection refused",
            );
        }
        e.add("auth", 0);
        assert_eq!(
            e.to_string(),
            "connect 3 (connection refused ×3), timeout 1"
        );
        assert_eq!(e.total(), 4);
        assert_eq!(
            e.details()["connect"].example,
            "connect: Connection refused"
        );
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"connect": 3, "timeout": 1})
        );
    }

    #[test]
    fn reasons_are_bounded() {
        let mut e = Errors::default();
        for i in 0..MAX_REASONS + 4 {
            e.count("channel", &format!("reason {i}"), "m");
        }
        let d = &e.details()["channel"];
        assert_eq!(d.reasons.len(), MAX_REASONS + 1, "{d:?}");
        assert_eq!(d.reasons["other"], 4);
        assert_eq!(d.count, MAX_REASONS as u64 + 4);
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
        a.count("connect", "refused", "first");
        let mut b = Errors::default();
        b.count("connect", "reset", "second");
        b.count("auth", "auth", "no");
        a.merge(b);
        assert_eq!(a.total(), 3);
        assert_eq!(a.get("connect"), 2);
        assert_eq!(a.details()["connect"].example, "first");
        assert_eq!(a.details()["connect"].reasons.len(), 2);
    }
}
