//! A session's lifetimes at run time: idle (from its byte counts) and a time-based deadline
//! with one warning ahead of it, in one task per session that ends with the session.

use std::sync::Arc;
use std::time::Duration;

use super::{SessionStats, Sessions};
use crate::route::lifetime::{Deadline, Lifetimes, human, warn_before, warning};

pub(super) async fn enforce(
    (sessions, id): (Arc<Sessions>, u64),
    stats: Arc<SessionStats>,
    closed: impl std::future::Future<Output = Option<String>>,
    lifetimes: Lifetimes,
    deadline: Option<Deadline>,
    warn: impl Fn(String),
) {
    use tokio::time::Instant;
    tokio::pin!(closed);
    let start = Instant::now();
    let (mut last_total, mut last_change) = (stats.total(), start);
    let mut warned = false;
    let poll = lifetimes.idle.map_or(Duration::from_secs(3600), |i| {
        (i / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    });
    loop {
        let now = Instant::now();
        if let Some(idle) = lifetimes.idle {
            let total = stats.total();
            if total != last_total {
                (last_total, last_change) = (total, now);
            } else if now.duration_since(last_change) >= idle {
                let message = format!("session ended: idle for {}", human(idle));
                sessions.end(id, "idle", &message);
                return;
            }
        }
        let mut wake = now + poll;
        if let Some(d) = &deadline {
            let end_at = start + d.after;
            if now >= end_at {
                sessions.end(id, d.label, &d.end_message);
                return;
            }
            let warn_at = end_at - warn_before(d.after);
            if !warned {
                if now >= warn_at {
                    warn(warning(end_at - now, d));
                    warned = true;
                } else {
                    wake = wake.min(warn_at);
                }
            }
            wake = wake.min(end_at);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = &mut closed => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use prometheus::IntGauge;

    use super::*;
    use crate::session::SessionInfo;

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_end_and_busy_ones_do_not() {
        let sessions = Sessions::new(IntGauge::new("s", "sessions").unwrap());
        let idle = sessions.open(SessionInfo::default());
        let busy = sessions.open(SessionInfo::default());
        let l = Lifetimes {
            idle: Some(Duration::from_secs(10)),
            max: None,
            at_cert_expiry: false,
        };
        idle.spawn_lifetimes(l, None, |_| {});
        busy.spawn_lifetimes(l, None, |_| {});
        let (idle_end, busy_end) = (idle.killed(), busy.killed());
        for _ in 0..30 {
            busy.stats().up.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(
            idle_end.await.as_deref(),
            Some("session ended: idle for 10 s")
        );
        assert!(
            tokio::time::timeout(Duration::from_millis(1), busy_end)
                .await
                .is_err(),
            "a session moving data was ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_warns_then_ends() {
        let sessions = Sessions::new(IntGauge::new("s", "sessions").unwrap());
        let s = sessions.open(SessionInfo::default());
        let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = warnings.clone();
        let d = Deadline {
            after: Duration::from_secs(600),
            label: "max_duration",
            why: "sessions last at most 10 minutes".into(),
            end_message: "session ended: max".into(),
        };
        let started = tokio::time::Instant::now();
        s.spawn_lifetimes(
            Lifetimes {
                idle: None,
                max: Some(Duration::from_secs(600)),
                at_cert_expiry: false,
            },
            Some(d),
            move |w| seen.lock().unwrap().push((started.elapsed(), w)),
        );
        assert_eq!(s.killed().await.as_deref(), Some("session ended: max"));
        assert_eq!(started.elapsed(), Duration::from_secs(600));
        let warnings = warnings.lock().unwrap();
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].0, Duration::from_secs(300));
        assert!(
            warnings[0].1.contains("ends in 5 minutes"),
            "{:?}",
            warnings[0]
        );
    }
}
