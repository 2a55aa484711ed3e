//! What the edge writes to its log, read back: a refused certificate names its reason, key id,
//! serial and peer; the text log has no colour codes when stderr is a file; `--log-format json`
//! writes one JSON object a line with the expected fields and a single `message`.

use std::time::Duration;

use crate::harness::{Door, run_with_timeout, text};

/// Logs in once, and is refused twice: a certificate whose `source-address` excludes
/// loopback (serial 4242), and a host name that does not parse.
fn refused_logins(door: &Door) {
    let key = door.keygen_cert(
        "elsewhere",
        &["-z", "4242", "-O", "source-address=192.0.2.0/24"],
    );
    let out = door.ssh(&key, &[], "echo inside");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out)
    );
    let out = door.ssh(&door.user_key, &[], "echo inside");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inside\n",
        "{}",
        text(&out)
    );
    let out = run_with_timeout(
        &mut door.ssh_command_as("training-job-x", &door.user_key, &[], "echo inside"),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(255), "{}", text(&out));
    door.wait_metric(
        "ssh_edge_auth_failures_total{reason=\"source_address\"}",
        Duration::from_secs(20),
        |v| v == 1,
    );
}

#[test]
fn a_refused_certificate_is_logged_with_its_reason_key_id_serial_and_peer() {
    let door = Door::start(|_, _| {});
    refused_logins(&door);
    let log = door.log();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log written to a file:\n{log}"
    );
    let refused: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("certificate refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{log}");
    let line = refused[0];
    for want in [
        " WARN ",
        "reason=\"source_address\"",
        "key_id=\"elsewhere-id\"",
        "serial=4242",
        "client=127.0.0.1:",
        "target=\"training-job-abc1234-0.ssh.baseten.co\"",
        "not in source-address \"192.0.2.0/24\"",
    ] {
        assert!(line.contains(want), "{want:?} missing from: {line}");
    }
}

/// `"message":` outside any string value: the escaped form inside a string is `\"message\":`,
/// so counting the raw text counts keys.
fn message_keys(line: &str) -> usize {
    line.matches("\"message\":").count()
}

#[test]
fn json_logs_are_one_object_a_line_with_a_single_message() {
    let door = Door::start_with_args(&["--log-format", "json"], |_, _| {});
    refused_logins(&door);
    let log = door.log();
    assert!(!log.is_empty());
    let mut messages = Vec::new();
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nin:\n{log}"));
        for field in ["timestamp", "level", "target"] {
            assert!(v[field].is_string(), "no {field}: {line}");
        }
        let message = v["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fields.message: {line}"));
        assert_eq!(message_keys(line), 1, "two message keys: {line}");
        messages.push((message.to_string(), v));
    }
    // The events the test caused are there, with their fields as JSON values.
    let find = |m: &str| {
        messages
            .iter()
            .find(|(msg, _)| msg == m)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {m:?} event in:\n{log}"))
    };
    let refused = find("certificate refused");
    assert_eq!(refused["level"], "WARN", "{refused}");
    assert_eq!(refused["fields"]["reason"], "source_address", "{refused}");
    assert_eq!(refused["fields"]["key_id"], "elsewhere-id", "{refused}");
    assert_eq!(refused["fields"]["serial"], 4242, "{refused}");
    let refusing = find("refusing session");
    let detail = refusing["fields"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("training-job-x"), "{refusing}");
    find("ssh-edge listening");
}
