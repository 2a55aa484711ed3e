//! The load generator binary against a real edge (in-process, on loopback) in front of the
//! lab's real sshd: every mode completes logins with no errors and reports what it measured;
//! a stall flood is held to the edge's per-source cap and cut at its login grace; a
//! non-loopback target is refused before any connection.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use ssh_edge::edge::{Edge, Listeners};
use ssh_edge::lab::Lab;
use ssh_edge::metrics::Metrics;

struct Edged {
    ssh_port: u16,
    key: std::path::PathBuf,
    metrics: Arc<Metrics>,
    _lab: Lab,
    _runtime: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
}

fn start() -> Edged {
    start_with(|_| {})
}

/// An edge whose config `adjust` changed first.
fn start_with(adjust: impl FnOnce(&mut ssh_edge::config::RawConfig)) -> Edged {
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).unwrap();
    let mut raw = lab.edge_config("127.0.0.1:0", "127.0.0.1:0").unwrap();
    adjust(&mut raw);
    let config = ssh_edge::config::validate(&raw).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let ssh_port = runtime.block_on(async {
        let listeners = Listeners::bind(&config).await.unwrap();
        let port = listeners.ssh_addr().unwrap().port();
        tokio::spawn(Edge::new(config, metrics.clone()).unwrap().serve(listeners));
        port
    });
    let key = lab
        .issue_user_certificate(
            "load_key",
            "load@example",
            &["abc1234"],
            Duration::from_secs(600),
        )
        .unwrap();
    Edged {
        ssh_port,
        key,
        metrics,
        _lab: lab,
        _runtime: runtime,
        _tmp: tmp,
    }
}

fn loadtest(e: &Edged, mode: &str, connections: u32, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge-loadtest"))
        .args(["--addr", &format!("127.0.0.1:{}", e.ssh_port)])
        .args(["--user", "training-job-abc1234-0", "--key"])
        .arg(&e.key)
        .args(["--mode", mode, "--connections", &connections.to_string()])
        .args(["--duration-secs", "2", "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_mode_logs_in_through_the_edge_and_reports() {
    let e = start();
    let logins = loadtest(&e, "logins", 2, &[]);
    assert!(logins["ok"].as_u64().unwrap() >= 2, "{logins}");
    assert_eq!(logins["errors"], serde_json::json!({}), "{logins}");
    assert!(logins["latency"]["p50_ms"].as_f64().unwrap() > 0.0);

    let me = std::process::id().to_string();
    let idle = loadtest(&e, "idle", 5, &["--watch-pid", &me]);
    assert_eq!(idle["ok"].as_u64(), Some(5), "{idle}");
    assert!(idle["memory"]["held_bytes"].as_u64().unwrap() > 0, "{idle}");

    let bulk = loadtest(&e, "bulk", 2, &[]);
    assert_eq!(bulk["ok"].as_u64(), Some(2), "{bulk}");
    assert!(bulk["bytes_sent"].as_u64().unwrap() > 0, "{bulk}");

    // The edge saw each of those logins.
    let text = e.metrics.render();
    let logged: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("ssh_edge_logins_total{front=\"ssh\"} "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let reported = logins["ok"].as_u64().unwrap() + 5 + 2;
    assert!(
        logged >= reported,
        "edge counted {logged} logins, load test {reported}"
    );
}

/// `ssh_edge_connections_rejected_total{listener="ssh",reason}` now.
fn rejected(e: &Edged, reason: &str) -> u64 {
    let prefix =
        format!("ssh_edge_connections_rejected_total{{listener=\"ssh\",reason=\"{reason}\"}} ");
    e.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A stall flood (no key, no user) at the edge's SSH port.
fn stall(e: &Edged, stall: &str, connections: u32, secs: u32, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge-loadtest"))
        .args(["--addr", &format!("127.0.0.1:{}", e.ssh_port)])
        .args(["--mode", "stall", "--stall", stall])
        .args(["--connections", &connections.to_string()])
        .args(["--duration-secs", &secs.to_string(), "--json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stall {stall}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["stall"].clone()
}

#[test]
fn a_stall_flood_is_held_to_the_per_source_cap_and_cut_at_the_login_grace() {
    let e = start_with(|raw| {
        raw.limits.per_source_max = 4;
        raw.ssh.login_grace_secs = 2;
    });
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}: {v}"));

    // 8 identification stalls spread over two sources, for less than the grace: each
    // source's 4 fit under the cap, so all 8 are held to the end.
    let spread = stall(&e, "ident", 8, 1, &["--sources", "2"]);
    assert_eq!(n(&spread, "established"), 8, "{spread}");
    assert_eq!(n(&spread, "closed_by_edge"), 0, "{spread}");
    assert_eq!(n(&spread, "still_open_at_end"), 8, "{spread}");
    assert_eq!(rejected(&e, "per_source"), 0);

    // 12 silent connections from one address for twice the grace: 8 refused at once with the
    // edge's notice, the 4 held cut by the grace deadline, and the reconnects go on.
    let one = stall(&e, "silent", 12, 4, &[]);
    assert!(n(&one, "closed_by_edge") >= 12, "{one}");
    assert!(n(&one, "refused_with_notice") >= 8, "{one}");
    assert!(n(&one, "attempts") > 12, "the flood reconnects: {one}");
    assert!(rejected(&e, "per_source") >= 8, "{}", e.metrics.render());
    assert!(rejected(&e, "grace") >= 4, "{}", e.metrics.render());
}

#[test]
fn a_target_off_loopback_is_refused_without_connecting() {
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge-loadtest"))
        .args([
            "--addr",
            "192.0.2.10:22",
            "--user",
            "u",
            "--key",
            "/nonexistent",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );
}
