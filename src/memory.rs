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

/// When to trim (pure): the count moved away from `at_last_trim` by at least `min_change`
/// sessions and a quarter of `at_last_trim`, and did not move since the previous look (the
/// burst of logins or closes is over).
pub fn should_trim(at_last_trim: usize, previous: usize, now: usize, min_change: usize) -> bool {
    now == previous && now.abs_diff(at_last_trim) >= min_change.max(at_last_trim / 4)
}

/// A change of fewer sessions than this is not worth a trim.
const MIN_CHANGE: usize = 32;

/// Runs for the life of the edge.
pub async fn trim_after_sessions_change(sessions: Arc<Sessions>) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut at_last_trim, mut previous) = (0, 0);
    loop {
        tick.tick().await;
        let now = sessions.count();
        if should_trim(at_last_trim, previous, now, MIN_CHANGE) {
            let released = tokio::task::spawn_blocking(release).await.unwrap_or(false);
            tracing::debug!(
                at_last_trim,
                sessions = now,
                released,
                "returned freed memory to the system"
            );
            at_last_trim = now;
        }
        previous = now;
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

    #[test]
    fn trims_once_a_fall_has_settled() {
        assert!(should_trim(400, 0, 0, 32), "all closed, settled");
        assert!(!should_trim(400, 10, 0, 32), "still closing");
        assert!(
            !should_trim(400, 350, 350, 32),
            "not far enough below the last trim"
        );
        assert!(!should_trim(40, 20, 20, 32), "too few sessions to matter");
        assert!(should_trim(1000, 600, 600, 32));
        assert!(!should_trim(0, 0, 0, 32), "nothing ever open");
    }

    #[test]
    fn trims_once_a_burst_of_logins_has_settled() {
        assert!(should_trim(0, 400, 400, 32), "400 logged in, settled");
        assert!(!should_trim(0, 390, 400, 32), "still logging in");
        assert!(!should_trim(0, 20, 20, 32), "too few logins to matter");
        assert!(!should_trim(400, 450, 450, 32), "a small rise on many");
        assert!(should_trim(400, 600, 600, 32));
    }

    #[test]
    fn release_can_be_called() {
        let _ = release();
    }
}
