//! Session lifetimes with real OpenSSH: a maximum session time and a certificate's expiry
//! warn on the session's stderr first and then end it with the reason; an idle session ends
//! while one moving data does not.

use crate::harness::{Door, text};

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Index of `needle` in `hay`, failing with both when absent.
fn at(hay: &str, needle: &str) -> usize {
    hay.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{hay}"))
}

#[test]
fn a_maximum_session_time_warns_then_ends_the_session() {
    let door = Door::start(|raw, _| raw.routes[0].max_session_secs = Some(4));
    let out = door.ssh(&door.user_key, &[], "sleep 30; echo finished");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("finished"));
    let err = stderr_of(&out);
    // The warning comes about 2 s before the end ("ends in 2 s", or 1 s on a loaded machine).
    let warned = at(&err, "ssh-edge: this session ends in ");
    at(&err, " s: sessions last at most 4 s");
    let ended = at(
        &err,
        "ssh-edge: session ended: the maximum session time of 4 s was reached",
    );
    assert!(warned < ended, "{err}");
    door.wait_metric(
        "ssh_edge_sessions_ended_total{reason=\"max_duration\"}",
        std::time::Duration::from_secs(20),
        |n| n == 1,
    );
}

#[test]
fn an_idle_session_ends_and_a_busy_one_does_not() {
    let door = Door::start(|raw, _| {
        raw.remotes.get_mut("default").unwrap().idle_timeout_secs = Some(2);
    });
    // Output every half second for 5 s: longer than the idle limit, never idle.
    let out = door.ssh(
        &door.user_key,
        &[],
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo tick; sleep 0.5; done",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).matches("tick").count(),
        10,
        "{}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Silent for longer than the limit: ended.
    let out = door.ssh(&door.user_key, &[], "sleep 30; echo finished");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("finished"));
    at(&stderr_of(&out), "ssh-edge: session ended: idle for 2 s");
    door.wait_metric(
        "ssh_edge_sessions_ended_total{reason=\"idle\"}",
        std::time::Duration::from_secs(20),
        |n| n == 1,
    );
}

#[test]
fn a_session_ends_when_its_certificate_expires() {
    let door = Door::start(|_, _| {});
    let short = door.keygen_cert_valid("short", "-1m:+6s");
    let out = door.ssh(&short, &[], "sleep 30; echo finished");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("finished"));
    let err = stderr_of(&out);
    let warned = at(&err, ": your certificate expires at ");
    let ended = at(
        &err,
        "ssh-edge: session ended: your certificate expired at ",
    );
    assert!(warned < ended, "{err}");
    door.wait_metric(
        "ssh_edge_sessions_ended_total{reason=\"cert_expiry\"}",
        std::time::Duration::from_secs(20),
        |n| n == 1,
    );
    // Turned off, the same kind of certificate keeps its session.
    let door = Door::start(|raw, _| {
        raw.remotes
            .get_mut("default")
            .unwrap()
            .disconnect_at_cert_expiry = Some(false);
    });
    let short = door.keygen_cert_valid("short", "-1m:+3s");
    let out = door.ssh(&short, &[], "sleep 5; echo finished");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "finished\n",
        "{}",
        text(&out)
    );
}
