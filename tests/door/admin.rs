//! The admin endpoint's bearer token, `check-config`'s warning for an open admin endpoint, and
//! the open-files limit raised at start.

use std::time::Duration;

use crate::harness::{Door, http_get};
use crate::process::Bounded;

#[test]
fn the_admin_token_guards_everything_but_the_probes() {
    let door = Door::start(|raw, lab| {
        let file = lab.path("admin-token");
        std::fs::write(&file, "s3cret-admin-token-0123456789\n").unwrap();
        raw.admin.bearer_token_file = Some(file);
    });
    let token = door.admin_token.clone().unwrap();
    let anonymous = http_get(door.admin, "/metrics", None);
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    assert!(
        !anonymous.contains("ssh_edge_"),
        "metrics leaked without a token"
    );
    let wrong = http_get(
        door.admin,
        "/metrics",
        Some("s3cret-admin-token-0123456788"),
    );
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    let ok = http_get(door.admin, "/metrics", Some(&token));
    assert!(
        ok.starts_with("HTTP/1.1 200") && ok.contains("ssh_edge_connections_total"),
        "{ok}"
    );
    for probe in ["/healthz", "/readyz"] {
        let r = http_get(door.admin, probe, None);
        assert!(r.starts_with("HTTP/1.1 200"), "{probe}: {r}");
    }
}

#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let door = Door::start(|_, _| {});
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", door.pid())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<_> = line.split_whitespace().collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(fields[3], fields[4], "soft limit not raised: {line}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !door.log().contains("open-files limit raised") {
        assert!(
            std::time::Instant::now() < deadline,
            "not logged:\n{}",
            door.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn check_config_warns_about_an_open_admin_endpoint_without_a_token() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = ssh_edge::lab::Lab::create(&tmp.path().join("lab"), &[crate::harness::JOB]).unwrap();
    let mut raw = lab.edge_config("127.0.0.1:0", "127.0.0.1:0").unwrap();
    raw.listen.admin = Some("0.0.0.0:9100".into());
    let file = lab.write_config(&raw).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssh-edge"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output_bounded();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning: listen.admin 0.0.0.0:9100 is not loopback and admin.bearer_token_file is not set"),
        "{stdout}"
    );
    // With a token file, no warning.
    let token = lab.path("admin-token");
    std::fs::write(&token, "s3cret-admin-token-0123456789\n").unwrap();
    raw.admin.bearer_token_file = Some(token);
    let file = lab.write_config(&raw).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ssh-edge"))
        .args(["check-config", "--config"])
        .arg(&file)
        .output_bounded();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !stdout.contains("warning"),
        "{stdout}"
    );
}
