//! Session lifetimes, per remote and per route (pure): how long a session may sit idle, how
//! long it may last, and whether it ends when the user's certificate expires. A route's
//! setting wins over its remote's; unset everywhere means no idle or maximum limit and an end
//! at certificate expiry (Teleport's `disconnect_expired_cert`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The three settings as written, on a remote or a route (all optional).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LifetimeSettings {
    /// End a session with no channel data either way for this long (0 = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// End a session this long after it started (0 = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_session_secs: Option<u64>,
    /// End a session when the user's certificate expires (terminating fronts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_at_cert_expiry: Option<bool>,
}

impl LifetimeSettings {
    /// `self` where set, else `fallback`.
    pub(crate) fn or(self, fallback: LifetimeSettings) -> LifetimeSettings {
        LifetimeSettings {
            idle_timeout_secs: self.idle_timeout_secs.or(fallback.idle_timeout_secs),
            max_session_secs: self.max_session_secs.or(fallback.max_session_secs),
            disconnect_at_cert_expiry: self
                .disconnect_at_cert_expiry
                .or(fallback.disconnect_at_cert_expiry),
        }
    }

    pub(crate) fn resolve(self) -> Lifetimes {
        let secs = |s: Option<u64>| s.filter(|&s| s > 0).map(Duration::from_secs);
        Lifetimes {
            idle: secs(self.idle_timeout_secs),
            max: secs(self.max_session_secs),
            at_cert_expiry: self.disconnect_at_cert_expiry.unwrap_or(true),
        }
    }
}

/// The limits one session runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lifetimes {
    pub idle: Option<Duration>,
    pub max: Option<Duration>,
    pub at_cert_expiry: bool,
}

impl Default for Lifetimes {
    fn default() -> Self {
        LifetimeSettings::default().resolve()
    }
}

/// A session's time-based end: how long after its start, the metric label, and what the user
/// is told before and at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deadline {
    pub after: Duration,
    pub label: &'static str,
    /// Why, for the warning ("your certificate expires at 14:05 UTC").
    pub why: String,
    /// The final message (after `ssh-edge: `).
    pub end_message: String,
}

/// "HH:MM UTC" of a Unix time.
fn utc_clock(unix: u64) -> String {
    let day = unix % 86_400;
    format!("{:02}:{:02} UTC", day / 3600, (day % 3600) / 60)
}

/// "5 minutes", "1 minute", "42 s".
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s} s"),
        60..=119 => "1 minute".into(),
        _ => format!("{} minutes", s / 60),
    }
}

/// The earliest time-based end: the maximum session time, or the certificate's expiry
/// (`cert_valid_before`, Unix seconds) when the lifetimes say so. `now_unix` is the start.
pub(crate) fn deadline(
    l: &Lifetimes,
    cert_valid_before: Option<u64>,
    now_unix: u64,
) -> Option<Deadline> {
    let max = l.max.map(|m| Deadline {
        after: m,
        label: "max_duration",
        why: format!("sessions last at most {}", human(m)),
        end_message: format!(
            "session ended: the maximum session time of {} was reached",
            human(m)
        ),
    });
    let expiry = cert_valid_before
        .filter(|_| l.at_cert_expiry)
        // OpenSSH's "forever" is u64::MAX: no end.
        .filter(|&v| v != u64::MAX)
        .map(|v| Deadline {
            after: Duration::from_secs(v.saturating_sub(now_unix)),
            label: "cert_expiry",
            why: format!("your certificate expires at {}", utc_clock(v)),
            end_message: format!(
                "session ended: your certificate expired at {}; get a new one and reconnect",
                utc_clock(v)
            ),
        });
    earliest(max.as_ref(), expiry.as_ref())
}

/// The earlier of two deadlines (the first on a tie).
pub(crate) fn earliest(a: Option<&Deadline>, b: Option<&Deadline>) -> Option<Deadline> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.after < a.after { b } else { a }.clone()),
        (a, b) => a.or(b).cloned(),
    }
}

/// The workload's session expiry (`at`, Unix seconds) as a deadline of a session that started
/// at `start_unix`.
pub(crate) fn workload_expiry(at: u64, start_unix: u64) -> Deadline {
    Deadline {
        after: Duration::from_secs(at.saturating_sub(start_unix)),
        label: "workload_expiry",
        why: format!("the workload's session expires at {}", utc_clock(at)),
        end_message: format!(
            "session ended: the workload's session expired at {}; extend it and reconnect",
            utc_clock(at)
        ),
    }
}

/// How long before a time-based end the user is warned: 5 minutes, or half the session for a
/// shorter one.
pub(crate) fn warn_before(after: Duration) -> Duration {
    (after / 2).min(Duration::from_secs(300))
}

/// The warning written to the session's stderr.
pub(crate) fn warning(remaining: Duration, d: &Deadline) -> String {
    // Whole seconds, rounded up: 1.99 s left is "2 s".
    let remaining = Duration::from_secs(remaining.as_millis().div_ceil(1000) as u64);
    format!(
        "\r\nssh-edge: this session ends in {}: {}\r\n",
        human(remaining),
        d.why
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_win_over_remotes_and_defaults_fill_in() {
        let remote = LifetimeSettings {
            idle_timeout_secs: Some(600),
            max_session_secs: Some(3600),
            disconnect_at_cert_expiry: None,
        };
        let route = LifetimeSettings {
            max_session_secs: Some(0),
            ..LifetimeSettings::default()
        };
        let l = route.or(remote).resolve();
        assert_eq!(l.idle, Some(Duration::from_secs(600)));
        assert_eq!(l.max, None, "0 on the route turns the remote's limit off");
        assert!(l.at_cert_expiry);
        assert_eq!(Lifetimes::default().idle, None);
    }

    #[test]
    fn the_earliest_end_wins() {
        let l = Lifetimes {
            idle: None,
            max: Some(Duration::from_secs(3600)),
            at_cert_expiry: true,
        };
        // 14:05 UTC on some day, 10 minutes from now.
        let now = 1_700_000_000 - (1_700_000_000 % 86_400) + 13 * 3600 + 55 * 60;
        let d = deadline(&l, Some(now + 600), now).unwrap();
        assert_eq!(d.label, "cert_expiry");
        assert_eq!(d.after, Duration::from_secs(600));
        assert_eq!(d.why, "your certificate expires at 14:05 UTC");
        assert_eq!(
            warning(Duration::from_secs(300), &d),
            "\r\nssh-edge: this session ends in 5 minutes: your certificate expires at 14:05 UTC\r\n"
        );
        let d = deadline(&l, Some(now + 86_400), now).unwrap();
        assert_eq!(d.label, "max_duration");
        // Off: no expiry end; a certificate valid "forever" has none either.
        let off = Lifetimes {
            at_cert_expiry: false,
            ..l
        };
        assert_eq!(
            deadline(&off, Some(now + 600), now).unwrap().label,
            "max_duration"
        );
        let none = Lifetimes { max: None, ..l };
        assert!(deadline(&none, Some(u64::MAX), now).is_none());
        assert!(deadline(&none, None, now).is_none());
    }

    #[test]
    fn warnings_come_early_enough() {
        assert_eq!(
            warn_before(Duration::from_secs(3600)),
            Duration::from_secs(300)
        );
        assert_eq!(warn_before(Duration::from_secs(4)), Duration::from_secs(2));
        assert_eq!(human(Duration::from_secs(90)), "1 minute");
        assert_eq!(human(Duration::from_secs(59)), "59 s");
    }
}
