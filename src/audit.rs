//! The audit stream: one JSON object per line, separate from the logs, to `audit.file` (or
//! stdout with `audit.file = "-"`; off when unset). Schema version 1, every event:
//!
//! `{"v":1,"ts":<unix ms>,"event":"…", …fields}` with events
//! - `session.start`: id, front, client, key_id/serial/ca_fingerprint (A, C) or sub/jti (B),
//!   target, remote, backend;
//! - `session.end`: id, duration_ms, bytes_up, bytes_down, reason (`closed`, `killed`, …);
//! - `channel.open`: session, type (`session`, `direct-tcpip`), and for forwards `to`
//!   ("host:port");
//! - `exec`: session, command (escaped, cut at 1 KiB);
//! - `auth.denied`: reason, key_id, serial, ca_fingerprint, client, target;
//! - `token.denied`: reason, client;
//! - `session.killed`: id, reason, by (the admin request).
//!
//! Peer-controlled text is escaped to printable ASCII (`text::escape_untrusted`); no secret is
//! ever an event field. Events go through a bounded queue to one writer task: a slow disk never
//! blocks a session; an event that finds the queue full is counted
//! (`ssh_edge_audit_dropped_total`) and lost.

use std::io::Write;
use std::path::PathBuf;

use prometheus::IntCounter;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

/// Events queued at most before new ones are dropped (and counted).
const QUEUE: usize = 65_536;

/// Longest command text kept in an `exec` event.
pub(crate) const MAX_COMMAND: usize = 1024;

pub(crate) struct Audit {
    tx: Option<mpsc::Sender<String>>,
    dropped: IntCounter,
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditSink {
    Off,
    Stdout,
    File(PathBuf),
}

impl Audit {
    /// Starts the writer task (needs a tokio runtime). A file that cannot be opened is an
    /// error naming it.
    pub(crate) fn start(sink: &AuditSink, dropped: IntCounter) -> Result<Self, String> {
        let mut out: Box<dyn Write + Send> = match sink {
            AuditSink::Off => {
                return Ok(Self { tx: None, dropped });
            }
            AuditSink::Stdout => Box::new(std::io::stdout()),
            AuditSink::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("audit.file {}: {e}", path.display()))?,
            ),
        };
        let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
        tokio::task::spawn_blocking(move || {
            while let Some(line) = rx.blocking_recv() {
                if out.write_all(line.as_bytes()).is_err() || out.flush().is_err() {
                    tracing::error!("audit sink write failed; events are being lost");
                }
            }
        });
        Ok(Self {
            tx: Some(tx),
            dropped,
        })
    }

    /// An audit stream that records nothing.
    pub(crate) fn off() -> Self {
        Self {
            tx: None,
            dropped: IntCounter::new("ssh_edge_audit_dropped_total", "unused").expect("static"),
        }
    }

    /// Records `event` with `fields` (an object).
    pub(crate) fn emit(&self, event: &str, fields: Value) {
        let Some(tx) = &self.tx else { return };
        let mut line = Map::new();
        line.insert("v".into(), 1.into());
        let ts = crate::time::unix_now_millis();
        line.insert("ts".into(), ts.into());
        line.insert("event".into(), event.into());
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        let text = Value::Object(line).to_string() + "\n";
        if tx.try_send(text).is_err() {
            self.dropped.inc();
        }
    }
}

/// Peer-controlled text made safe for an event field.
pub(crate) fn clean(s: &str, max: usize) -> String {
    crate::text::escape_untrusted(s, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_are_json_lines_with_version_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::start(
            &AuditSink::File(path.clone()),
            IntCounter::new("d", "dropped").unwrap(),
        )
        .unwrap();
        audit.emit(
            "exec",
            serde_json::json!({ "command": clean("ls\x1b[2J\n", 100) }),
        );
        audit.emit("session.end", serde_json::json!({ "id": 7 }));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 {
                break text;
            }
            assert!(std::time::Instant::now() < deadline, "{text}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events[0]["v"], 1);
        assert_eq!(events[0]["event"], "exec");
        assert!(events[0]["ts"].as_u64().unwrap() > 1_600_000_000_000);
        let command = events[0]["command"].as_str().unwrap();
        assert!(!command.chars().any(|c| c.is_control()), "{command:?}");
        assert_eq!(events[1]["id"], 7);
    }
}
