//! Wall-clock time as certificates, tokens and logs count it: seconds (or milliseconds) since
//! the Unix epoch. One place, so every check compares against the same clock reading.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch; 0 if the clock reads before 1970 (a broken clock fails the
/// validity checks closed rather than panicking).
#[must_use]
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (audit timestamps); 0 before 1970.
#[must_use]
pub(crate) fn unix_now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_agrees_with_itself() {
        let secs = unix_now();
        let millis = unix_now_millis();
        // After 2020-01-01 and the two readings within the same few seconds.
        assert!(secs > 1_577_836_800, "{secs}");
        assert!(
            millis / 1000 >= secs && millis / 1000 - secs < 60,
            "{secs} {millis}"
        );
    }
}
