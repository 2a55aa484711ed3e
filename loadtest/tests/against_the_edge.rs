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

#[path = "../../tests/common/process.rs"]
mod process;
use process::Bounded;

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
        .output_bounded();
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

    // Whole chunks, each confirmed by the far end's cksum.
    let sent = bulk["bytes_sent"].as_u64().unwrap();
    assert!(sent > 0, "{bulk}");
    assert_eq!(sent % ssh_edge_loadtest::verify::CHUNK as u64, 0, "{bulk}");
    assert_eq!(bulk["verify"], "cksum", "{bulk}");
    assert_eq!(bulk["bytes_verified"].as_u64(), Some(sent), "{bulk}");
    for (mode, report) in [("logins", &logins), ("idle", &idle), ("bulk", &bulk)] {
        assert_eq!(report["errors"], serde_json::json!({}), "{mode}: {report}");
    }

    // The edge saw exactly those logins, and forwarded exactly the bulk bytes upstream (the
    // other modes send no data).
    let reported = logins["ok"].as_u64().unwrap() + 5 + 2;
    assert_eq!(
        metric(&e, "ssh_edge_logins_total{front=\"ssh\"}"),
        reported,
        "edge and load test disagree on logins"
    );
    assert_eq!(
        metric(&e, "ssh_edge_bridge_bytes_total{direction=\"up\"}"),
        sent,
        "edge and load test disagree on bytes sent"
    );
}

/// One series in the edge's metrics, `None` if the scrape has none (series with open label
/// values, like rejection reasons, appear with their first count).
fn series(e: &Edged, name_and_labels: &str) -> Option<u64> {
    e.metrics.render().lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse::<f64>()
            .ok()
            .map(|v| v as u64)
    })
}

/// One series that must exist: a renamed metric fails rather than reading as 0.
fn metric(e: &Edged, name_and_labels: &str) -> u64 {
    series(e, name_and_labels).unwrap_or_else(|| {
        panic!(
            "metric series {name_and_labels} missing:\n{}",
            e.metrics.render()
        )
    })
}

/// `ssh_edge_connections_rejected_total{listener="ssh",reason}` now; `None` if absent (reasons
/// other than admission's appear with their first count).
fn rejected(e: &Edged, reason: &str) -> Option<u64> {
    series(
        e,
        &format!("ssh_edge_connections_rejected_total{{listener=\"ssh\",reason=\"{reason}\"}}"),
    )
}

/// Waits until the edge has counted at least `n` rejections for `reason` (it counts just
/// after the close the client saw), failing after 20 s.
fn wait_rejected_at_least(e: &Edged, reason: &str, n: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rejected(e, reason).is_none_or(|v| v < n) {
        assert!(
            std::time::Instant::now() < deadline,
            "{reason}: the edge counted {:?} rejections, the generator saw {n}",
            rejected(e, reason)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A stall flood (no key, no user) at the edge's SSH port.
fn stall(e: &Edged, stall: &str, connections: u32, secs: u32, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge-loadtest"))
        .args(["--addr", &format!("127.0.0.1:{}", e.ssh_port)])
        .args(["--mode", "stall", "--stall", stall])
        .args(["--connections", &connections.to_string()])
        .args(["--duration-secs", &secs.to_string(), "--json"])
        .args(extra)
        .output_bounded();
    assert!(
        out.status.success(),
        "stall {stall}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let counts = report["stall"].clone();
    // The generator's own books balance: every connect either failed or was established,
    // and every established one was closed by the edge or still open at the end.
    let n = |k: &str| {
        counts[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k}: {counts}"))
    };
    assert_eq!(
        n("attempts"),
        n("established") + n("connect_failed"),
        "{counts}"
    );
    assert_eq!(
        n("established"),
        n("closed_by_edge") + n("still_open_at_end"),
        "{counts}"
    );
    counts
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
    // Nothing refused (the admission series exist from the start).
    assert_eq!(
        rejected(&e, "per_source"),
        Some(0),
        "{}",
        e.metrics.render()
    );

    // 12 silent connections from one address for twice the grace: 8 refused at once with the
    // edge's notice, the 4 held cut by the grace deadline, and the reconnects go on.
    let one = stall(&e, "silent", 12, 4, &[]);
    assert!(n(&one, "closed_by_edge") >= 12, "{one}");
    assert!(n(&one, "refused_with_notice") >= 8, "{one}");
    assert!(n(&one, "attempts") > 12, "the flood reconnects: {one}");
    // The edge counted every refusal the generator read (and perhaps one it had not read
    // yet at the end), and cut the held ones at the grace.
    let refused = n(&one, "refused_with_notice");
    wait_rejected_at_least(&e, "per_source", refused);
    wait_rejected_at_least(&e, "grace", 4);
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
        .output_bounded();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("--allow-remote"),
        "{err}"
    );
}

/// The generator's exit status and JSON report (printed on failure too).
fn run_loadtest(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge-loadtest"))
        .args(args)
        .arg("--json")
        .output_bounded();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

fn edge_args(e: &Edged) -> Vec<String> {
    vec![
        "--addr".into(),
        format!("127.0.0.1:{}", e.ssh_port),
        "--user".into(),
        "training-job-abc1234-0".into(),
        "--key".into(),
        e.key.display().to_string(),
    ]
}

fn with<'a>(base: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect()
}

#[test]
fn a_ramp_is_obeyed_and_memory_is_sampled_while_every_session_is_held() {
    let e = start();
    let base = edge_args(&e);
    let me = std::process::id().to_string();
    let (code, idle) = run_loadtest(&with(
        &base,
        &[
            "--mode",
            "idle",
            "--connections",
            "12",
            "--ramp-per-sec",
            "5",
            "--duration-secs",
            "1",
            "--watch-pid",
            &me,
        ],
    ));
    assert_eq!(code, Some(0), "{idle}");
    assert_eq!(idle["ok"].as_u64(), Some(12), "{idle}");
    let buckets: Vec<u64> = idle["starts_per_sec"]
        .as_array()
        .unwrap_or_else(|| panic!("no starts_per_sec: {idle}"))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(buckets.iter().sum::<u64>(), 12, "{idle}");
    // 12 starts at most 5 a second span at least three one-second buckets.
    assert!(buckets.len() >= 3, "{idle}");
    assert!(buckets.iter().all(|n| *n <= 6), "{idle}");
    assert_eq!(idle["memory"]["held_sessions"].as_u64(), Some(12), "{idle}");
    assert!(idle["memory"]["held_bytes"].as_u64().unwrap() > 0, "{idle}");
}

#[test]
fn bulk_data_is_checked_at_the_far_end() {
    let e = start();
    let base = edge_args(&e);
    let (code, bulk) = run_loadtest(&with(
        &base,
        &[
            "--mode",
            "bulk",
            "--connections",
            "2",
            "--duration-secs",
            "1",
        ],
    ));
    assert_eq!(code, Some(0), "{bulk}");
    assert_eq!(bulk["verify"], "cksum", "{bulk}");
    assert_eq!(bulk["errors"], serde_json::json!({}), "{bulk}");
    let sent = bulk["bytes_sent"].as_u64().unwrap();
    assert!(sent > 0, "{bulk}");
    assert_eq!(bulk["bytes_verified"].as_u64(), Some(sent), "{bulk}");

    let (code, count) = run_loadtest(&with(
        &base,
        &[
            "--mode",
            "bulk",
            "--connections",
            "1",
            "--duration-secs",
            "1",
            "--verify",
            "count",
        ],
    ));
    assert_eq!(code, Some(0), "{count}");
    assert_eq!(count["bytes_verified"], count["bytes_sent"], "{count}");

    // A far end that changes bytes on the way is caught, and fails the run.
    let (code, bad) = run_loadtest(&with(
        &base,
        &[
            "--mode",
            "bulk",
            "--connections",
            "2",
            "--duration-secs",
            "1",
            "--command",
            "tr '\\000' '\\001' | cksum",
        ],
    ));
    assert_eq!(code, Some(1), "{bad}");
    assert_eq!(bad["errors"]["corrupt"].as_u64(), Some(2), "{bad}");
    assert_eq!(bad["bytes_verified"].as_u64(), Some(0), "{bad}");
    let example = bad["error_details"]["corrupt"]["example"].as_str().unwrap();
    assert!(example.contains("the far end read"), "{bad}");
}

#[test]
fn the_summary_names_why_logins_failed() {
    // A loopback port with nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // A real key and certificate: the generator loads them before it connects.
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).unwrap();
    let key = lab
        .issue_user_certificate("k", "k@example", &["abc1234"], Duration::from_secs(600))
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let key = key.display().to_string();
    let args = [
        "--addr",
        &addr,
        "--user",
        "u",
        "--key",
        &key,
        "--mode",
        "logins",
        "--connections",
        "2",
        "--duration-secs",
        "1",
        "--ramp-per-sec",
        "20",
    ];
    let (code, report) = run_loadtest(&args);
    assert_eq!(code, Some(1), "{report}");
    let connect = report["errors"]["connect"].as_u64().unwrap_or(0);
    assert!(connect > 0, "{report}");
    let reasons = report["error_details"]["connect"]["reasons"]
        .as_object()
        .unwrap_or_else(|| panic!("no reasons: {report}"));
    assert!(reasons.keys().any(|r| r.contains("refused")), "{report}");
    // At most 20 logins a second were tried, the ramp holding in logins mode too.
    let tried: u64 = report["starts_per_sec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(tried, connect, "{report}");
    assert!(tried <= 2 * 21, "{report}");

    // The text summary says it too.
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge-loadtest"))
        .args(args)
        .output_bounded();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("connect ") && text.contains("refused ×"),
        "{text}"
    );
}

/// The edge's front C offers the AES-GCM ciphers only: one of them logs in, ChaCha20 is
/// refused in the handshake (so the option reaches the negotiation), an unknown name up front.
#[test]
fn a_named_cipher_is_the_only_one_offered() {
    let e = start();
    let base = edge_args(&e);
    let logins = |cipher: &'static str| {
        let extra = [
            "--mode",
            "logins",
            "--connections",
            "1",
            "--duration-secs",
            "1",
            "--cipher",
            cipher,
        ];
        run_loadtest(&with(&base, &extra))
    };
    let (code, r) = logins("aes256-gcm@openssh.com");
    assert_eq!(code, Some(0), "{r}");
    assert!(r["ok"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["cipher"], "aes256-gcm@openssh.com", "{r}");

    let (code, r) = logins("chacha20-poly1305@openssh.com");
    assert_eq!(code, Some(1), "{r}");
    let reasons = r["error_details"]["connect"]["reasons"]
        .as_object()
        .unwrap();
    assert!(
        reasons.keys().any(|k| k.contains("no common cipher")),
        "{r}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge-loadtest"))
        .args(with(&base, &["--cipher", "rot13"]))
        .output_bounded();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rot13") && err.contains("aes128-gcm@openssh.com"),
        "{err}"
    );
}
