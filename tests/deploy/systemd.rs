//! deploy/systemd/ssh-edge.service: `systemd-analyze verify` accepts it (with its binary
//! paths pointed at the real built binary), its sandbox rates "OK", and it stops after the
//! drain and reloads with SIGHUP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{deploy, edge_exe, read, run, run_ok, text, tool};

const INSTALLED: &str = "/usr/local/bin/ssh-edge";

fn unit() -> String {
    read(&deploy("systemd/ssh-edge.service"))
}

/// `Key=value` lines of the unit (every occurrence).
fn values(key: &str) -> Vec<String> {
    unit()
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(String::from)
        .collect()
}

fn value(key: &str) -> String {
    let v = values(key);
    assert_eq!(v.len(), 1, "{key}= should appear once: {v:?}");
    v[0].clone()
}

/// The unit in a temp dir, with the installed binary path replaced by the built one.
fn unit_with_real_binary(dir: &Path) -> PathBuf {
    let text = unit();
    assert!(text.contains(INSTALLED));
    let path = dir.join("ssh-edge.service");
    std::fs::write(
        &path,
        text.replace(INSTALLED, &edge_exe().display().to_string()),
    )
    .unwrap();
    path
}

fn systemd_analyze() -> PathBuf {
    tool("systemd-analyze", "the Debian package systemd")
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = unit_with_real_binary(tmp.path());
    let out = run(
        Command::new(systemd_analyze()).arg("verify").arg(&unit),
        Duration::from_secs(120),
    );
    // Unknown keys and bad values are only warnings to systemd: any output fails here.
    let all = text(&out);
    assert!(
        out.status.success() && all.trim().is_empty(),
        "systemd-analyze verify:\n{all}"
    );

    // And verify does catch a missing binary.
    let broken = tmp.path().join("broken.service");
    std::fs::write(
        &broken,
        read(&unit).replace(&edge_exe().display().to_string(), "/nonexistent/ssh-edge"),
    )
    .unwrap();
    let out = run(
        Command::new(systemd_analyze()).arg("verify").arg(&broken),
        Duration::from_secs(120),
    );
    assert!(
        !out.status.success(),
        "verify accepted a missing binary: {}",
        text(&out)
    );
}

#[test]
fn the_unit_sandbox_rates_ok() {
    let tmp = tempfile::tempdir().unwrap();
    let unit = unit_with_real_binary(tmp.path());
    // Exposure 0..10 shown, 0..100 for --threshold: fail above 2.0.
    let out = run_ok(
        Command::new(systemd_analyze())
            .args(["security", "--no-pager", "--offline=true", "--threshold=20"])
            .arg(&unit),
        Duration::from_secs(120),
    );
    assert!(out.contains("Overall exposure level"), "{out}");
}

#[test]
fn the_unit_runs_the_config_reloads_on_hup_and_outlasts_the_drain() {
    assert_eq!(
        value("ExecStart"),
        format!("{INSTALLED} run --config /etc/ssh-edge/edge.toml")
    );
    assert!(values("ExecReload").contains(&"/bin/kill -HUP $MAINPID".to_string()));
    assert_eq!(value("KillSignal"), "SIGTERM");
    assert_eq!(value("Restart"), "on-failure");
    assert_eq!(value("LimitNOFILE"), "65536");
    assert_eq!(value("Type"), "simple");
    let stop: u64 = value("TimeoutStopSec")
        .parse()
        .expect("TimeoutStopSec in seconds");
    let drain = ssh_edge::config::RawConfig::default()
        .listen
        .drain_timeout_secs;
    assert!(
        stop > drain,
        "TimeoutStopSec {stop} <= listen.drain_timeout_secs default {drain}"
    );
    for (key, expected) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("ReadOnlyPaths", "/etc/ssh-edge"),
    ] {
        assert_eq!(value(key), expected, "{key}");
    }
    assert!(values("SystemCallFilter").contains(&"@system-service".to_string()));
    assert!(
        !values("User").is_empty() || value("DynamicUser") == "yes",
        "runs as root"
    );
}
