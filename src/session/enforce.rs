//! A session's lifetimes at run time: idle (from its byte counts) and a time-based deadline
//! with one warning ahead of it, in one task per session that ends with the session.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{SessionStats, Sessions};
use crate::route::lifetime::{
    Deadline, Lifetimes, earliest, human, warn_before, warning, workload_expiry,
};
use crate::time::unix_now;

/// The workload's session expiry from the control plane, re-read while the session lives so
/// that an extension moves the end (and a cut brings it forward).
pub(crate) struct WorkloadExpiry {
    /// Unix seconds, as known when the session started (`None`: none yet).
    pub at: Option<u64>,
    /// How often it is read again.
    pub refresh_every: Duration,
    /// Reads it (`true`: bypassing any cache, before acting on it): `None` = no answer (keep
    /// the one known), `Some(None)` = no expiry.
    pub read: Arc<dyn Fn(bool) -> BoxFuture<'static, Option<Option<u64>>> + Send + Sync>,
}

/// The time-based ends of one session: fixed (maximum time, certificate expiry) and the
/// workload's expiry, which can move.
pub(super) struct Ends {
    pub deadline: Option<Deadline>,
    pub expiry: Option<WorkloadExpiry>,
}

pub(super) async fn enforce(
    (sessions, id): (Arc<Sessions>, u64),
    stats: Arc<SessionStats>,
    closed: impl std::future::Future<Output = Option<String>>,
    lifetimes: Lifetimes,
    ends: Ends,
    warn: impl Fn(String),
) {
    use tokio::time::Instant;
    tokio::pin!(closed);
    let start = Instant::now();
    let start_unix = unix_now();
    let (mut last_total, mut last_change) = (stats.total(), start);
    // The deadline a warning was given for: a moved deadline is warned about again.
    let mut warned_for: Option<Duration> = None;
    let poll = lifetimes.idle.map_or(Duration::from_secs(3600), |i| {
        (i / 4).clamp(Duration::from_millis(100), Duration::from_secs(5))
    });
    let mut expiry = ends
        .expiry
        .as_ref()
        .and_then(|e| e.at)
        .map(|at| workload_expiry(at, start_unix));
    let mut next_refresh = ends.expiry.as_ref().map(|e| start + e.refresh_every);
    loop {
        let mut now = Instant::now();
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
        // Re-read the workload's expiry when due, and before warning about or ending on it.
        if let (Some(source), Some(due)) = (&ends.expiry, next_refresh) {
            let on_expiry = earliest(ends.deadline.as_ref(), expiry.as_ref())
                .filter(|d| d.label == "workload_expiry")
                .map(|d| start + d.after);
            let acting = on_expiry.is_some_and(|end_at| {
                let warn_at = end_at - warn_before(end_at - start);
                now >= end_at || (now >= warn_at && warned_for != Some(end_at - start))
            });
            if now >= due || acting {
                if let Some(at) = (source.read)(acting).await {
                    expiry = at.map(|at| workload_expiry(at, start_unix));
                }
                now = Instant::now();
                next_refresh = Some(now + source.refresh_every);
            }
        }
        let mut wake = now + poll;
        if let Some(due) = next_refresh {
            wake = wake.min(due);
        }
        if let Some(d) = earliest(ends.deadline.as_ref(), expiry.as_ref()) {
            let end_at = start + d.after;
            if now >= end_at {
                sessions.end(id, d.label, &d.end_message);
                return;
            }
            let warn_at = end_at - warn_before(d.after);
            if warned_for != Some(d.after) {
                if now >= warn_at {
                    warn(warning(end_at - now, &d));
                    warned_for = Some(d.after);
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

    use futures::future::BoxFuture;

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
        idle.spawn_lifetimes(l, None, None, |_| {});
        busy.spawn_lifetimes(l, None, None, |_| {});
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
            None,
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

    #[tokio::test(start_paused = true)]
    async fn an_extended_workload_expiry_moves_the_end_and_warns_again() {
        let sessions = Sessions::new(IntGauge::new("s", "sessions").unwrap());
        let s = sessions.open(SessionInfo::default());
        let start = unix_now();
        let expiry = Arc::new(std::sync::Mutex::new(Some(start + 20)));
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (source, counter) = (expiry.clone(), reads.clone());
        let read = Arc::new(move |_fresh: bool| {
            counter.fetch_add(1, Ordering::Relaxed);
            let at = *source.lock().unwrap();
            Box::pin(async move { Some(at) }) as BoxFuture<'static, Option<Option<u64>>>
        });
        let warnings = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = warnings.clone();
        let started = tokio::time::Instant::now();
        s.spawn_lifetimes(
            Lifetimes {
                idle: None,
                max: None,
                at_cert_expiry: false,
            },
            None,
            Some(WorkloadExpiry {
                at: Some(start + 20),
                refresh_every: Duration::from_secs(2),
                read,
            }),
            move |w| seen.lock().unwrap().push((started.elapsed(), w)),
        );
        let end = s.killed();
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert_eq!(warnings.lock().unwrap().len(), 1, "warned at half-time");
        // Extended while the session runs: the end moves to 60 s, with a second warning.
        *expiry.lock().unwrap() = Some(start + 60);
        let message = end.await.expect("ended by the edge");
        assert!(
            message.starts_with("session ended: the workload's session expired at"),
            "{message}"
        );
        let ended_after = started.elapsed();
        assert!(
            ended_after >= Duration::from_secs(59) && ended_after <= Duration::from_secs(61),
            "ended after {ended_after:?}"
        );
        let warnings = warnings.lock().unwrap();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[1].0 >= Duration::from_secs(29), "{warnings:?}");
        assert!(reads.load(Ordering::Relaxed) >= 20, "re-read every 2 s");
    }
}
