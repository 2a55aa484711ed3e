//! Live sessions: a registry ops can list and end sessions from (admin API), the count of open
//! sessions, and a way to wait until none are (graceful drain) without polling. Shared by every
//! configuration generation, since sessions outlive reloads.
//!
//! A session registers once at login and unregisters when its guard drops: nothing here runs
//! per packet.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use prometheus::{IntCounterVec, IntGauge};
use serde::Serialize;
use tokio::sync::watch;

mod enforce;

use crate::route::lifetime::{Deadline, Lifetimes};
use crate::time::unix_now;
pub(crate) use enforce::WorkloadExpiry;
use enforce::{Ends, enforce};

/// What the registry shows about one session (the admin API's JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SessionInfo {
    pub id: u64,
    /// "tls" (front A), "token" (front B), "ssh" (front C).
    pub front: String,
    /// The client's address (from a trusted PROXY header, else the TCP peer).
    pub client: String,
    /// Terminating fronts: the user's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    /// Front B: the token's subject and id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The workload host.
    pub target: String,
    pub remote: String,
    pub backend: String,
    /// Unix seconds.
    pub started: u64,
    /// Bytes forwarded so far, client → backend and back (channel data on fronts A and C,
    /// the raw stream on front B).
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Unix seconds of the last byte either way (sampled every second); `started` until then.
    pub last_activity: u64,
    /// Open channels the client opened, by type (`session`, `direct-tcpip`).
    pub channels: std::collections::BTreeMap<String, u32>,
}

/// A session's counts: bytes (added to on the hot path, see `bytes_count`) and open
/// channels by type (at open and close).
#[derive(Debug, Default)]
pub(crate) struct SessionStats {
    pub up: Arc<AtomicU64>,
    pub down: Arc<AtomicU64>,
    channels: std::sync::Mutex<std::collections::BTreeMap<&'static str, u32>>,
}

impl SessionStats {
    fn channels(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<&'static str, u32>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A channel of `kind` opened (once per channel, not per packet).
    pub(crate) fn channel_opened(&self, kind: &'static str) {
        *self.channels().entry(kind).or_default() += 1;
    }

    pub(crate) fn channel_closed(&self, kind: &'static str) {
        let mut channels = self.channels();
        if let Some(n) = channels.get_mut(kind) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                channels.remove(kind);
            }
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.up.load(Ordering::Relaxed) + self.down.load(Ordering::Relaxed)
    }
}

/// Which sessions a kill request means; every field set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Selector {
    pub key_id: Option<String>,
    pub serial: Option<u64>,
    /// The workload host (full name, or its first label).
    pub workload: Option<String>,
    pub remote: Option<String>,
    /// Front B: the token's subject.
    pub sub: Option<String>,
}

impl Selector {
    pub(crate) fn is_empty(&self) -> bool {
        *self == Selector::default()
    }

    /// Pure match of one session's facts.
    pub(crate) fn matches(&self, s: &SessionInfo) -> bool {
        let workload_ok = self.workload.as_deref().is_none_or(|w| {
            let w = w.to_ascii_lowercase();
            s.target == w || s.target.split('.').next() == Some(w.as_str())
        });
        self.key_id
            .as_deref()
            .is_none_or(|k| s.key_id.as_deref() == Some(k))
            && self.serial.is_none_or(|n| s.serial == Some(n))
            && self.remote.as_deref().is_none_or(|r| s.remote == r)
            && self
                .sub
                .as_deref()
                .is_none_or(|u| s.sub.as_deref() == Some(u))
            && workload_ok
    }
}

struct Entry {
    info: SessionInfo,
    /// Set to the message the client is told when the edge ends the session.
    kill: watch::Sender<Option<String>>,
    /// Why it ended, for `ssh_edge_sessions_ended_total` (unset: the client or backend ended it).
    ended_by: Option<&'static str>,
    stats: Arc<SessionStats>,
    opened: std::time::Instant,
    /// The byte total at the last activity sample, and when it last changed (Unix seconds).
    sampled_total: AtomicU64,
    last_activity: AtomicU64,
}

impl Entry {
    fn snapshot(&self) -> SessionInfo {
        let mut info = self.info.clone();
        info.bytes_up = self.stats.up.load(Ordering::Relaxed);
        info.bytes_down = self.stats.down.load(Ordering::Relaxed);
        info.last_activity = self.last_activity.load(Ordering::Relaxed);
        info.channels = self
            .stats
            .channels()
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        info
    }
}

/// End reasons of `ssh_edge_sessions_ended_total`, all exported from the start.
pub(crate) const END_REASONS: [&str; 10] = [
    "client",
    "backend",
    "drain",
    "closed",
    "killed",
    "revoked",
    "idle",
    "max_duration",
    "cert_expiry",
    "workload_expiry",
];

/// The live sessions, mirrored into `ssh_edge_sessions_active`.
pub struct Sessions {
    gauge: IntGauge,
    ended: Option<IntCounterVec>,
    audit: Arc<crate::audit::Audit>,
    open: watch::Sender<usize>,
    entries: DashMap<u64, Entry>,
    next_id: AtomicU64,
}

/// One open session; dropping it closes it (and removes it from the registry).
pub(crate) struct SessionGuard {
    sessions: Arc<Sessions>,
    id: u64,
    killed: watch::Receiver<Option<String>>,
    stats: Arc<SessionStats>,
}

impl SessionGuard {
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The session's byte and channel counts, for the forwarding path to add to.
    pub(crate) fn stats(&self) -> &Arc<SessionStats> {
        &self.stats
    }

    /// Why the session ended, when it ends by itself (`client`, `backend`); an end the edge
    /// decided (kill, lifetime) keeps its own reason.
    pub(crate) fn set_end_reason(&self, label: &'static str) {
        if let Some(mut e) = self.sessions.entries.get_mut(&self.id)
            && e.ended_by.is_none()
        {
            e.ended_by = Some(label);
        }
    }

    /// Runs the session's lifetimes in a task of its own: idle (no bytes either way for
    /// `lifetimes.idle`) and the time-based `deadline`, with `warn` called once, ahead of the
    /// latter. The task ends with the session.
    pub(crate) fn spawn_lifetimes(
        &self,
        lifetimes: Lifetimes,
        deadline: Option<Deadline>,
        expiry: Option<WorkloadExpiry>,
        warn: impl Fn(String) + Send + 'static,
    ) {
        if lifetimes.idle.is_none() && deadline.is_none() && expiry.is_none() {
            return;
        }
        let ender = (self.sessions.clone(), self.id);
        let stats = self.stats.clone();
        let closed = self.killed();
        let ends = Ends { deadline, expiry };
        tokio::spawn(enforce(ender, stats, closed, lifetimes, ends, warn));
    }

    /// Resolves with the message once the edge ends this session, or with `None` once
    /// the session has ended by itself (so a task waiting on it does not outlive it).
    pub(crate) fn killed(
        &self,
    ) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
        let mut rx = self.killed.clone();
        async move {
            loop {
                if let Some(reason) = rx.borrow_and_update().clone() {
                    return Some(reason);
                }
                rx.changed().await.ok()?;
            }
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        let removed = self.sessions.entries.remove(&self.id).map(|(_, e)| e);
        let label = removed
            .as_ref()
            .and_then(|e| e.ended_by)
            .unwrap_or("closed");
        if let Some(e) = &removed {
            self.sessions.audit.emit(
                "session.end",
                serde_json::json!({
                    "id": self.id,
                    "duration_ms": e.opened.elapsed().as_millis() as u64,
                    "bytes_up": e.stats.up.load(Ordering::Relaxed),
                    "bytes_down": e.stats.down.load(Ordering::Relaxed),
                    "reason": label,
                }),
            );
        }
        if let Some(ended) = &self.sessions.ended {
            ended.with_label_values(&[label]).inc();
        }
        self.sessions.gauge.dec();
        self.sessions.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Sessions {
    #[cfg(test)]
    pub(crate) fn new(gauge: IntGauge) -> Arc<Self> {
        Self::observed(gauge, None, Arc::new(crate::audit::Audit::off()))
    }

    /// As [`Self::new`], counting ends by reason in `ended` (label `reason`) and recording
    /// starts, ends and kills in `audit`.
    pub(crate) fn observed(
        gauge: IntGauge,
        ended: Option<IntCounterVec>,
        audit: Arc<crate::audit::Audit>,
    ) -> Arc<Self> {
        if let Some(ended) = &ended {
            for reason in END_REASONS {
                ended.with_label_values(&[reason]);
            }
        }
        let sessions = Arc::new(Self {
            gauge,
            ended,
            audit,
            open: watch::Sender::new(0),
            entries: DashMap::new(),
            next_id: AtomicU64::new(1),
        });
        // Last activity, sampled once a second (nothing per packet); ends with the registry.
        if tokio::runtime::Handle::try_current().is_ok() {
            let weak = Arc::downgrade(&sessions);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    let Some(sessions) = weak.upgrade() else {
                        return;
                    };
                    let now = unix_now();
                    for e in sessions.entries.iter() {
                        let total = e.stats.total();
                        if e.sampled_total.swap(total, Ordering::Relaxed) != total {
                            e.last_activity.store(now, Ordering::Relaxed);
                        }
                    }
                }
            });
        }
        sessions
    }

    /// Ends every open session (the edge is stopping): returns how many.
    pub(crate) fn end_all(&self, label: &'static str, message: &str) -> usize {
        let ids: Vec<u64> = self.entries.iter().map(|e| *e.key()).collect();
        ids.into_iter()
            .filter(|id| self.end(*id, label, message))
            .count()
    }

    /// Registers a session (its id and start time are filled in) until the guard drops.
    pub(crate) fn open(self: &Arc<Self>, mut info: SessionInfo) -> SessionGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        info.id = id;
        info.started = unix_now();
        if let Ok(serde_json::Value::Object(mut fields)) = serde_json::to_value(&info) {
            fields.remove("bytes_up");
            fields.remove("bytes_down");
            self.audit
                .emit("session.start", serde_json::Value::Object(fields));
        }
        let (kill, killed) = watch::channel(None);
        let stats = Arc::new(SessionStats::default());
        self.entries.insert(
            id,
            Entry {
                info,
                kill,
                ended_by: None,
                stats: stats.clone(),
                opened: std::time::Instant::now(),
                sampled_total: AtomicU64::new(0),
                last_activity: AtomicU64::new(unix_now()),
            },
        );
        self.gauge.inc();
        self.open.send_modify(|n| *n += 1);
        SessionGuard {
            sessions: self.clone(),
            id,
            killed,
            stats,
        }
    }

    /// The sessions `selector` matches (all with an empty one), oldest first.
    pub(crate) fn list(&self, selector: &Selector) -> Vec<SessionInfo> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .filter(|e| selector.matches(&e.info))
            .map(|e| e.snapshot())
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    pub(crate) fn get(&self, id: u64) -> Option<SessionInfo> {
        self.entries.get(&id).map(|e| e.snapshot())
    }

    /// The audit stream sessions report to.
    pub(crate) fn audit(&self) -> &crate::audit::Audit {
        &self.audit
    }

    /// Ends one session with `reason` (an administrator's kill); false when there is no such
    /// session.
    #[cfg(test)]
    pub(crate) fn kill(&self, id: u64, reason: &str) -> bool {
        self.kill_by(id, reason, "")
    }

    /// As [`Self::kill`], recording `by` (the admin request) in the audit stream.
    pub(crate) fn kill_by(&self, id: u64, reason: &str, by: &str) -> bool {
        let ended = self.end(
            id,
            "killed",
            &format!("session ended by an administrator: {reason}"),
        );
        if ended {
            self.audit.emit(
                "session.killed",
                serde_json::json!({ "id": id, "reason": reason, "by": by }),
            );
        }
        ended
    }

    /// Ends one session, counted under `label` (one of [`END_REASONS`]); `message` is what
    /// the client is told (after `ssh-edge: `).
    pub(crate) fn end(&self, id: u64, label: &'static str, message: &str) -> bool {
        let reason = message;
        match self.entries.get_mut(&id) {
            Some(mut e) => {
                e.ended_by = Some(label);
                e.kill.send_replace(Some(reason.to_string()));
                true
            }
            None => false,
        }
    }

    /// Ends every session `selector` matches (none for an empty selector); returns them.
    pub(crate) fn kill_matching(
        &self,
        selector: &Selector,
        reason: &str,
        by: &str,
    ) -> Vec<SessionInfo> {
        if selector.is_empty() {
            return Vec::new();
        }
        let victims = self.list(selector);
        for v in &victims {
            self.kill_by(v.id, reason, by);
        }
        victims
    }

    pub fn count(&self) -> usize {
        *self.open.borrow()
    }

    /// The open-session count as it changes.
    pub(crate) fn watch_count(&self) -> watch::Receiver<usize> {
        self.open.subscribe()
    }

    /// Waits until no session is open, at most `timeout`; true when they all ended.
    pub(crate) async fn wait_empty(&self, timeout: Duration) -> bool {
        let mut open = self.open.subscribe();
        tokio::time::timeout(timeout, open.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_the_last_session() {
        let sessions = Sessions::new(IntGauge::new("s", "sessions").unwrap());
        assert!(sessions.wait_empty(Duration::from_secs(1)).await);
        let a = sessions.open(SessionInfo::default());
        let b = sessions.open(SessionInfo::default());
        assert_eq!(sessions.count(), 2);
        assert!(!sessions.wait_empty(Duration::from_secs(1)).await);
        drop(a);
        let waiter = {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.wait_empty(Duration::from_secs(60)).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(sessions.gauge.get(), 0);
    }

    fn info(key_id: &str, target: &str) -> SessionInfo {
        SessionInfo {
            key_id: Some(key_id.into()),
            serial: Some(7),
            target: target.into(),
            remote: "default".into(),
            ..SessionInfo::default()
        }
    }

    #[tokio::test]
    async fn sessions_are_listed_killed_and_forgotten() {
        let sessions = Sessions::new(IntGauge::new("s", "sessions").unwrap());
        let alice = sessions.open(info("alice", "training-job-a-0.ssh.baseten.co"));
        let bob = sessions.open(info("bob", "training-job-b-0.ssh.baseten.co"));
        assert_eq!(sessions.list(&Selector::default()).len(), 2);
        let by_key = Selector {
            key_id: Some("alice".into()),
            ..Selector::default()
        };
        assert_eq!(sessions.list(&by_key)[0].id, alice.id());
        let by_workload = Selector {
            workload: Some("training-job-b-0".into()),
            ..Selector::default()
        };
        assert_eq!(sessions.list(&by_workload)[0].id, bob.id());
        // An empty selector kills nothing.
        assert!(
            sessions
                .kill_matching(&Selector::default(), "x", "test")
                .is_empty()
        );
        let killed = sessions.kill_matching(&by_key, "leaked key", "test");
        assert_eq!(killed.len(), 1);
        assert_eq!(
            alice.killed().await.as_deref(),
            Some("session ended by an administrator: leaked key")
        );
        // Bob was not touched.
        let bob_killed = bob.killed();
        assert!(
            tokio::time::timeout(Duration::from_millis(50), bob_killed)
                .await
                .is_err()
        );
        let waiting = alice.killed();
        drop(alice);
        assert!(waiting.await.unwrap().ends_with("leaked key"));
        let bob_waiting = bob.killed();
        drop(bob);
        assert_eq!(bob_waiting.await, None, "a waiter ends with its session");
        assert!(sessions.get(killed[0].id).is_none());
        assert!(!sessions.kill(killed[0].id, "again"));
        assert_eq!(sessions.count(), 0);
    }
}
