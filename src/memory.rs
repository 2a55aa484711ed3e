//! Handing memory freed by closed sessions back to the system.
//!
//! glibc's malloc keeps what threads freed in their arenas: an edge that held 400 sessions
//! kept their ~80 MiB after they closed (no leak: the heap in use was back under 1 MiB), and
//! a burst of logins leaves the temporary memory of their key exchanges and authentications
//! as free holes between the sessions that stay (about a fifth of an idle session's PSS). A
//! task watches the session count and, once it has moved well away from where it was at the
//! last trim (up or down) and stayed there a moment, asks glibc to return free pages
//! (`malloc_trim(0)`). jemalloc and mimalloc
//! were measured instead (`benches/scale.sh`, `benches/throughput.sh`): jemalloc returned
//! part of it but doubled the edge's CPU per GiB forwarded; mimalloc returned nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::session::Sessions;

/// How often the session count is looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// When to trim (pure): fed every session count seen, and asked at each look.
#[derive(Debug, Default)]
pub(crate) struct TrimWatch {
    at_last_trim: usize,
    /// The most sessions seen open since the last trim (sessions that opened and closed
    /// between two looks count too: their memory is as free as that of long ones).
    peak: usize,
    previous: usize,
}

impl TrimWatch {
    /// A count seen between looks.
    pub(crate) fn saw(&mut self, open: usize) {
        self.peak = self.peak.max(open);
    }

    /// A look: true when the count has risen well above where it was at the last trim (a burst
    /// of logins leaves its key exchanges' memory behind) or fallen well below the peak since
    /// (closed sessions left theirs), by at least `min_change` sessions and a quarter, and did
    /// not move since the previous look (the burst is over).
    pub(crate) fn look(&mut self, now: usize, min_change: usize) -> bool {
        self.saw(now);
        let settled = now == self.previous;
        self.previous = now;
        let far = |from: usize, by: usize| by >= min_change.max(from / 4);
        let rose = far(self.at_last_trim, now.saturating_sub(self.at_last_trim));
        let fell = far(self.peak, self.peak - now);
        if settled && (rose || fell) {
            self.at_last_trim = now;
            self.peak = now;
            true
        } else {
            false
        }
    }
}

/// A change of fewer sessions than this is not worth a trim.
const MIN_CHANGE: usize = 32;

/// Runs for the life of the edge.
pub(crate) async fn trim_after_sessions_change(sessions: Arc<Sessions>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = sessions.watch_count();
    let mut watch = TrimWatch::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = sessions.count();
                if watch.look(now, MIN_CHANGE) {
                    let released = tokio::task::spawn_blocking(release).await.unwrap_or(false);
                    tracing::debug!(sessions = now, released, "returned freed memory to the system");
                }
            }
            changed = open.changed() => {
                if changed.is_err() {
                    return;
                }
                let n = *open.borrow_and_update();
                watch.saw(n);
            }
        }
    }
}

/// `malloc_trim(0)`: glibc returns the free pages of every arena. Elsewhere nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn release() -> bool {
    // SAFETY: malloc_trim takes no pointers and touches only glibc's own free lists, under
    // the arenas' locks; it is safe to call from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Looks at `counts` in turn; which looks trimmed.
    fn looks(counts: &[usize]) -> Vec<bool> {
        let mut w = TrimWatch::default();
        counts.iter().map(|&n| w.look(n, 32)).collect()
    }

    #[test]
    fn trims_once_a_fall_has_settled() {
        assert_eq!(
            looks(&[400, 400, 10, 0, 0]),
            [false, true, false, false, true],
            "up and settled, then closing, then closed and settled"
        );
        assert_eq!(
            looks(&[400, 400, 350, 350]),
            [false, true, false, false],
            "not far enough below the last trim"
        );
        assert_eq!(
            looks(&[20, 20, 0, 0]),
            [false, false, false, false],
            "too few to matter"
        );
        assert_eq!(
            looks(&[0, 0, 0]),
            [false, false, false],
            "nothing ever open"
        );
    }

    #[test]
    fn sessions_that_came_and_went_between_looks_count() {
        let mut w = TrimWatch::default();
        assert!(!w.look(0, 32));
        for n in [50, 100, 300, 120, 0] {
            w.saw(n);
        }
        assert!(w.look(0, 32), "300 opened and closed unseen by any look");
        assert!(!w.look(0, 32), "once");
    }

    #[test]
    fn trims_once_a_burst_of_logins_has_settled() {
        assert_eq!(looks(&[400, 400]), [false, true], "400 logged in, settled");
        assert_eq!(looks(&[390, 400]), [false, false], "still logging in");
        assert_eq!(
            looks(&[400, 400, 450, 450]),
            [false, true, false, false],
            "a small rise on many"
        );
        assert_eq!(looks(&[400, 400, 600, 600]), [false, true, false, true]);
    }

    #[test]
    fn release_can_be_called() {
        let _ = release();
    }
}
