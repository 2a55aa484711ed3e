//! The replicas' answers, checked, merged (each session tagged with the replica that holds
//! it) and printed: a table for people, JSON for scripts. Pure.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::http::ReplicaError;
use super::targets::{Failure, Target};
use crate::text::escape_untrusted;

/// One session as a replica's admin API shows it, plus the replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Session {
    pub id: u64,
    #[serde(default)]
    pub front: String,
    #[serde(default)]
    pub client: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default)]
    pub target: String,
    /// Unix seconds.
    #[serde(default)]
    pub started: u64,
    /// Set here, not by the replica: which replica holds the session.
    #[serde(default)]
    pub replica: String,
    /// Whatever else the replica said (`ca_fingerprint`, `jti`, `remote`, `backend`, …),
    /// passed through to `--json`.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Deserialize)]
struct ListBody {
    sessions: Vec<Session>,
}

#[derive(Deserialize)]
struct KilledBody {
    killed: Vec<Session>,
}

fn body_error(expected: &'static str, e: &serde_json::Error) -> ReplicaError {
    ReplicaError::Body {
        expected,
        // serde quotes the offending value: the peer's text.
        reason: escape_untrusted(&e.to_string(), 200),
    }
}

/// The body of `GET /sessions`.
pub(super) fn parse_list(body: &[u8]) -> Result<Vec<Session>, ReplicaError> {
    serde_json::from_slice::<ListBody>(body)
        .map(|b| b.sessions)
        .map_err(|e| body_error("{\"sessions\": [{\"id\": N, ...}]}", &e))
}

/// The body of `POST /sessions/kill` and `DELETE /sessions/{id}`.
pub(super) fn parse_killed(body: &[u8]) -> Result<Vec<Session>, ReplicaError> {
    serde_json::from_slice::<KilledBody>(body)
        .map(|b| b.killed)
        .map_err(|e| body_error("{\"killed\": [{\"id\": N, ...}]}", &e))
}

/// Every replica's answer in one place.
#[derive(Debug, Default)]
pub(crate) struct Merged {
    /// In the replicas' order, each replica's by id.
    pub sessions: Vec<Session>,
    /// The replicas that answered, and how many sessions each gave.
    pub answered: Vec<(String, usize)>,
    pub unreachable: Vec<Failure>,
}

/// Tags each session with its replica and puts the answers together; `failures` are replicas
/// that could not even be asked (an SRV target that did not resolve).
pub(super) fn merge(
    answers: Vec<(Target, Result<Vec<Session>, ReplicaError>)>,
    failures: Vec<Failure>,
) -> Merged {
    let mut merged = Merged {
        unreachable: failures,
        ..Merged::default()
    };
    for (target, answer) in answers {
        match answer {
            Ok(mut sessions) => {
                sessions.sort_by_key(|s| s.id);
                merged
                    .answered
                    .push((target.replica.clone(), sessions.len()));
                merged.sessions.extend(sessions.into_iter().map(|mut s| {
                    s.replica = target.replica.clone();
                    s
                }));
            }
            Err(error) => merged.unreachable.push(Failure {
                replica: target.replica,
                error,
            }),
        }
    }
    merged
}

fn unreachable_json(failures: &[Failure]) -> Value {
    failures
        .iter()
        .map(|f| json!({ "replica": f.replica, "error": f.error.to_string() }))
        .collect()
}

/// `list --json`: `{"sessions": [..., "replica": R], "unreachable": [{"replica", "error"}]}`.
pub(super) fn list_json(merged: &Merged) -> Value {
    json!({
        "sessions": merged.sessions,
        "unreachable": unreachable_json(&merged.unreachable),
    })
}

/// `kill --json`: the sessions ended, how many on each replica, who did not answer.
pub(super) fn kill_json(merged: &Merged) -> Value {
    let replicas: Vec<_> = merged
        .answered
        .iter()
        .map(|(replica, n)| json!({ "replica": replica, "killed": n }))
        .collect();
    json!({
        "killed": merged.sessions,
        "replicas": replicas,
        "unreachable": unreachable_json(&merged.unreachable),
    })
}

/// How long ago: `42s`, `5m7s`, `3h12m`, `2d4h`.
pub(super) fn age(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match seconds {
        0..60 => format!("{s}s"),
        60..3600 => format!("{m}m{s}s"),
        3600..86_400 => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

fn cell(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        escape_untrusted(s, 64)
    }
}

/// The human table: replica, id, front, client, key id (or token subject), target, age.
pub(super) fn table(sessions: &[Session], now: u64) -> String {
    let header = [
        "REPLICA",
        "ID",
        "FRONT",
        "CLIENT",
        "KEY_ID/SUB",
        "TARGET",
        "AGE",
    ]
    .map(String::from);
    let rows: Vec<[String; 7]> = sessions
        .iter()
        .map(|s| {
            let who = s.key_id.as_deref().or(s.sub.as_deref()).unwrap_or("");
            [
                cell(&s.replica),
                s.id.to_string(),
                cell(&s.front),
                cell(&s.client),
                cell(who),
                cell(&s.target),
                age(now.saturating_sub(s.started)),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// `kill`: how many sessions each replica ended (and their ids), then the total.
pub(super) fn kill_report(merged: &Merged) -> String {
    let mut out = String::new();
    for (replica, n) in &merged.answered {
        let ids: Vec<String> = merged
            .sessions
            .iter()
            .filter(|s| &s.replica == replica)
            .map(|s| s.id.to_string())
            .collect();
        let ids = match ids.len() {
            0 => String::new(),
            1 => format!(" (id {})", ids[0]),
            _ => format!(" (ids {})", ids.join(", ")),
        };
        out.push_str(&format!(
            "{}: ended {}{ids}\n",
            escape_untrusted(replica, 100),
            plural(*n, "session")
        ));
    }
    out.push_str(&format!(
        "ended {} on {}",
        plural(merged.sessions.len(), "session"),
        plural(merged.answered.len(), "replica")
    ));
    if !merged.unreachable.is_empty() {
        out.push_str(&format!(
            "; {} unreachable",
            plural(merged.unreachable.len(), "replica")
        ));
    }
    out.push('\n');
    out
}

/// For stderr: one line per replica that did not answer, and what that means.
pub(super) fn unreachable_report(failures: &[Failure], consequence: &str) -> String {
    failures
        .iter()
        .map(|f| {
            format!(
                "ssh-edge sessions: replica {} unreachable: {}; {consequence}\n",
                escape_untrusted(&f.replica, 100),
                f.error
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(replica: &str) -> Target {
        Target {
            replica: replica.into(),
            host: replica.split(':').next().unwrap_or_default().into(),
            port: 9100,
        }
    }

    const ONE: &[u8] = br#"{"sessions":[
        {"id":7,"front":"ssh","client":"10.1.0.9:50000","key_id":"alice","serial":42,
         "ca_fingerprint":"SHA256:abc","target":"training-job-a-0.ssh.baseten.co",
         "remote":"default","backend":"10.2.0.1:2222","started":1000},
        {"id":3,"front":"token","client":"10.1.0.8:40000","sub":"bob","jti":"j1",
         "target":"model-m1-d1.ssh.baseten.co","remote":"default","backend":"10.2.0.2:2222","started":400}
    ]}"#;

    #[test]
    fn answers_merge_with_their_replica() {
        let one = parse_list(ONE).unwrap();
        let two = parse_list(br#"{"sessions":[{"id":1,"key_id":"alice","started":990}]}"#).unwrap();
        let merged = merge(
            vec![
                (target("10.0.0.1:9100"), Ok(one)),
                (
                    target("10.0.0.2:9100"),
                    Err(ReplicaError::Timeout(std::time::Duration::from_secs(5))),
                ),
                (target("10.0.0.3:9100"), Ok(two)),
            ],
            vec![Failure {
                replica: "edge-4.test:9100".into(),
                error: ReplicaError::Resolve {
                    reason: "edge-4.test is not in DNS".into(),
                },
            }],
        );
        let ids: Vec<_> = merged
            .sessions
            .iter()
            .map(|s| (s.replica.as_str(), s.id))
            .collect();
        assert_eq!(
            ids,
            [
                ("10.0.0.1:9100", 3),
                ("10.0.0.1:9100", 7),
                ("10.0.0.3:9100", 1)
            ]
        );
        assert_eq!(
            merged.answered,
            [
                ("10.0.0.1:9100".to_string(), 2),
                ("10.0.0.3:9100".to_string(), 1)
            ]
        );
        let json = list_json(&merged);
        assert_eq!(json["sessions"][1]["replica"], "10.0.0.1:9100");
        // What the replica said is passed through, including fields this command does not use.
        assert_eq!(json["sessions"][1]["ca_fingerprint"], "SHA256:abc");
        assert_eq!(json["sessions"][1]["serial"], 42);
        assert_eq!(json["sessions"][0]["jti"], "j1");
        assert_eq!(
            json["unreachable"],
            json!([
                {"replica": "edge-4.test:9100", "error": "edge-4.test is not in DNS"},
                {"replica": "10.0.0.2:9100", "error": "no answer within 5 s"},
            ])
        );
        let stderr = unreachable_report(&merged.unreachable, "the list is incomplete");
        assert!(
            stderr.contains(
                "replica 10.0.0.2:9100 unreachable: no answer within 5 s; the list is incomplete"
            ),
            "{stderr}"
        );
    }

    #[test]
    fn bad_bodies_say_what_was_expected() {
        for body in [
            &br#"{"sessions":[{"id":"seven"}]}"#[..],
            br#"{"session":[]}"#,
            br#"[]"#,
            b"not json",
        ] {
            let e = parse_list(body).unwrap_err().to_string();
            assert!(e.contains("expected JSON {\"sessions\""), "{e}");
        }
        let e = parse_killed(b"{\"killed\":[{\"id\":\"\x1b[2J\"}]}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("expected JSON {\"killed\"") && !e.contains('\x1b'),
            "{e}"
        );
        assert_eq!(parse_killed(br#"{"killed":[]}"#).unwrap(), []);
    }

    #[test]
    fn the_table_is_aligned_and_escaped() {
        let mut sessions = parse_list(ONE).unwrap();
        for s in &mut sessions {
            s.replica = "10.0.0.1:9100".into();
        }
        sessions[1].key_id = Some("mallory\x1b[2J".into());
        let text = table(&sessions, 1000 + 3725);
        let want = "\
REPLICA        ID  FRONT  CLIENT          KEY_ID/SUB        TARGET                           AGE
10.0.0.1:9100  7   ssh    10.1.0.9:50000  alice             training-job-a-0.ssh.baseten.co  1h2m
10.0.0.1:9100  3   token  10.1.0.8:40000  mallory\\u{1b}[2J  model-m1-d1.ssh.baseten.co       1h12m
";
        assert_eq!(text, want);
        // A session without a key id or subject, started in the future (clock skew).
        let bare = Session {
            started: 5000,
            ..parse_list(br#"{"sessions":[{"id":1}]}"#).unwrap().remove(0)
        };
        assert_eq!(
            table(&[bare], 10).lines().nth(1),
            Some("-        1   -      -       -           -       0s")
        );
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(age(0), "0s");
        assert_eq!(age(59), "59s");
        assert_eq!(age(60), "1m0s");
        assert_eq!(age(3599), "59m59s");
        assert_eq!(age(3600), "1h0m");
        assert_eq!(age(86_399), "23h59m");
        assert_eq!(age(90_000), "1d1h");
    }

    #[test]
    fn kill_reports_count_per_replica() {
        let killed = parse_killed(br#"{"killed":[{"id":4},{"id":2}]}"#).unwrap();
        let merged = merge(
            vec![
                (target("10.0.0.1:9100"), Ok(killed)),
                (target("10.0.0.2:9100"), Ok(vec![])),
                (
                    target("10.0.0.3:9100"),
                    Err(ReplicaError::Connect("connection refused".into())),
                ),
            ],
            vec![],
        );
        assert_eq!(
            kill_report(&merged),
            "10.0.0.1:9100: ended 2 sessions (ids 2, 4)\n\
             10.0.0.2:9100: ended 0 sessions\n\
             ended 2 sessions on 2 replicas; 1 replica unreachable\n"
        );
        let json = kill_json(&merged);
        assert_eq!(
            json["replicas"][0],
            json!({"replica": "10.0.0.1:9100", "killed": 2})
        );
        assert_eq!(json["killed"][0]["replica"], "10.0.0.1:9100");
        assert_eq!(json["unreachable"][0]["replica"], "10.0.0.3:9100");
    }
}
