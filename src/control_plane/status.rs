//! The control plane's answer about one workload, and what the edge makes of it (pure).
//!
//! `GET {url}/v1/edge/workloads/{host}` answers
//! `{"state": "running"|"activatable"|"starting"|"stopped"|"unknown",
//!   "session_expires_at": <unix seconds or null>, "message": <text or null>}`.

use serde::Deserialize;

use crate::hostname::Target;
use crate::text::escape_untrusted;

/// Longest control-plane message passed on to a user.
pub(crate) const MAX_MESSAGE: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WorkloadState {
    /// Up: connect now.
    Running,
    /// Asleep, woken on demand: the edge asks the control plane to activate it, then waits.
    Activatable,
    /// Waking already: the edge waits.
    Starting,
    /// Not available (finished, stopped, or its trigger has not fired): refused with the message.
    Stopped,
    /// No such workload: refused with the message.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct WorkloadStatus {
    pub state: WorkloadState,
    #[serde(default)]
    pub session_expires_at: Option<u64>,
    #[serde(default)]
    pub message: Option<String>,
}

/// Parses an answer body; the error says what was expected.
pub(crate) fn parse_status(body: &[u8]) -> Result<WorkloadStatus, String> {
    serde_json::from_slice(body).map_err(|e| {
        format!(
            "expected {{\"state\": \"running|activatable|starting|stopped|unknown\", \"session_expires_at\": <unix secs|null>, \"message\": <text|null>}}: {}",
            escape_untrusted(&e.to_string(), 200)
        )
    })
}

/// What a login does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Connect to the backend.
    Proceed,
    /// Wait for the backend; `activate` = ask the control plane to start it first.
    Wake { activate: bool },
    /// Refuse: the metric reason and the user's message.
    Refuse {
        reason: &'static str,
        message: String,
    },
}

/// "training job abc1234", "model m1x2y3": how the user's workload is named in messages.
pub(crate) fn describe(target: &Target) -> String {
    let kind = target.kind.replace('-', " ");
    match target.fields.first() {
        Some((_, id)) => format!("{kind} {id}"),
        None => format!("{kind} {}", target.workload()),
    }
}

/// The control plane's message, made safe to show on a terminal: control characters become
/// spaces (no escape sequences reach the user's terminal), at most [`MAX_MESSAGE`] characters.
pub(crate) fn shown(message: Option<&str>) -> Option<String> {
    message.map(str::trim).filter(|m| !m.is_empty()).map(|m| {
        m.chars()
            .take(MAX_MESSAGE)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect()
    })
}

pub(crate) fn verdict(target: &Target, status: &WorkloadStatus) -> Verdict {
    let message = shown(status.message.as_deref());
    match status.state {
        WorkloadState::Running => Verdict::Proceed,
        WorkloadState::Activatable => Verdict::Wake { activate: true },
        WorkloadState::Starting => Verdict::Wake { activate: false },
        WorkloadState::Stopped => Verdict::Refuse {
            reason: "workload_stopped",
            message: message.unwrap_or_else(|| {
                format!("{} is not running and cannot be woken", describe(target))
            }),
        },
        WorkloadState::Unknown => Verdict::Refuse {
            reason: "workload_unknown",
            message: message.unwrap_or_else(|| "no such workload".into()),
        },
    }
}

/// The banner line shown while a workload wakes (ASCII only: OpenSSH escapes the rest in
/// the C locale).
pub(crate) fn waking_line(target: &Target, elapsed_secs: u64) -> String {
    format!(
        "ssh-edge: waking {} (on-demand session) ... {elapsed_secs} s\r\n",
        describe(target)
    )
}

pub(crate) fn woke_line(target: &Target, elapsed_secs: u64) -> String {
    format!(
        "ssh-edge: {} is up after {elapsed_secs} s\r\n",
        describe(target)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostname::{self, HostGrammar};

    fn target() -> Target {
        let kinds = hostname::default_kinds();
        HostGrammar::new(hostname::DEFAULT_SUFFIX, &kinds, &[])
            .unwrap()
            .parse_host("training-job-abc1234-0.ssh.baseten.co")
            .unwrap()
    }

    #[test]
    fn answers_parse_and_bad_ones_say_what_was_expected() {
        let s =
            parse_status(br#"{"state":"running","session_expires_at":1700000000,"message":null}"#)
                .unwrap();
        assert_eq!(s.state, WorkloadState::Running);
        assert_eq!(s.session_expires_at, Some(1_700_000_000));
        let s = parse_status(br#"{"state":"stopped"}"#).unwrap();
        assert_eq!((s.state, s.message), (WorkloadState::Stopped, None));
        let e = parse_status(br#"{"state":"sleeping"}"#).unwrap_err();
        assert!(e.contains("running|activatable"), "{e}");
        assert!(parse_status(b"<html>").is_err());
    }

    #[test]
    fn verdicts() {
        let t = target();
        let status = |state, message: Option<&str>| WorkloadStatus {
            state,
            session_expires_at: None,
            message: message.map(String::from),
        };
        assert_eq!(
            verdict(&t, &status(WorkloadState::Running, None)),
            Verdict::Proceed
        );
        assert_eq!(
            verdict(&t, &status(WorkloadState::Activatable, None)),
            Verdict::Wake { activate: true }
        );
        assert_eq!(
            verdict(&t, &status(WorkloadState::Starting, None)),
            Verdict::Wake { activate: false }
        );
        assert_eq!(
            verdict(
                &t,
                &status(WorkloadState::Stopped, Some("job finished\x1b[2J"))
            ),
            Verdict::Refuse {
                reason: "workload_stopped",
                message: "job finished [2J".into()
            }
        );
        match verdict(&t, &status(WorkloadState::Unknown, Some("  "))) {
            Verdict::Refuse { reason, message } => {
                assert_eq!(reason, "workload_unknown");
                assert_eq!(message, "no such workload");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            waking_line(&t, 12),
            "ssh-edge: waking training job abc1234 (on-demand session) ... 12 s\r\n"
        );
    }
}
