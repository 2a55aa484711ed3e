//! The binary itself: `check-config` lists every problem at once, `SSH_EDGE_*` variables
//! override the file, SIGHUP reloads the config and SIGTERM drains, the demo wakes its
//! sleeping workload.

use std::process::Command;

use ssh_edge::lab::Lab;

#[path = "common/process.rs"]
mod process;
use process::{Bounded, ECHO_ONE_LINE, Live, run_with_timeout, wait_exit, wait_output};

#[path = "common/cert_login.rs"]
mod cert_login;

fn ssh_edge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssh-edge"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SSH_EDGE_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn check_config_lists_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[listen]
ssh = "not-an-address"

[hosts]
kinds = [{ name = "training-job", template = "training-job-{job_id" }]

[auth]
force_command = "sometimes"

[remotes.default]
trusted_user_cas = ["not a key"]

[backend]
multiplex = true
multiplex_max_clients = 0

[[routes]]
kind = "notebook"
backend = "{job_id}:22"
login_user = "baseten"
principal = "{job_id}"
"#,
    )
    .unwrap();
    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&file)
        .output_bounded();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "listen.ssh: \"not-an-address\" is not an address",
        "ssh.host_key_files: at least one host key is required",
        "hosts:",
        "auth.force_command: \"sometimes\"",
        "remotes.default.trusted_user_cas[0]",
        "routes[0].kind: unknown kind \"notebook\"",
        "backend: set edge_ca_key_file",
        "backend: no way to verify backend host keys",
        "backend.multiplex_max_clients: must be at least 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        text.contains("invalid configuration (9 problems)"),
        "{text}"
    );
}

#[test]
fn unknown_fields_are_all_reported_once_with_their_path_and_the_expected_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(
        &file,
        "[listen]\nssh_port = 22\nssh = \"bogus\"\n[auth]\nmax_skew = 5\n[token]\nlifetime = 3\n",
    )
    .unwrap();
    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&file)
        .output_bounded();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for (key, expected) in [
        ("listen.ssh_port", "expected one of tls, ssh, admin"),
        ("auth.max_skew", "expected one of max_clock_skew_secs"),
        (
            "token.lifetime",
            "expected one of issuer, audience, max_lifetime_secs",
        ),
    ] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(key)).collect();
        assert_eq!(lines.len(), 1, "{key} not listed exactly once:\n{text}");
        assert!(
            lines[0].contains(&format!("{key}: unknown key (in {}", file.display()))
                && lines[0].contains(expected),
            "{key}: {}",
            lines[0]
        );
    }
    // The rest of the file is validated in the same run.
    assert!(text.contains("listen.ssh: \"bogus\""), "{text}");
    // Each message once: no error chain repeating it.
    assert_eq!(text.matches("max_skew").count(), 1, "{text}");
}

#[test]
fn check_config_without_files_checks_everything_but_the_files() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let out = ssh_edge()
        .args(["check-config", "--no-files", "--config"])
        .arg(&example)
        .output_bounded();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    // A problem that is not about a file still fails the check.
    let out = ssh_edge()
        .args(["check-config", "--no-files", "--config"])
        .arg(&example)
        .env("SSH_EDGE_SSH__WINDOW_SIZE", "1024")
        .output_bounded();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("ssh.window_size: 1024"), "{text}");
    assert!(!text.contains("/etc/ssh-edge/"), "{text}");
}

#[test]
fn the_issuer_checks_its_config_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).unwrap();
    let good = lab
        .write_issuer_config(&ssh_edge::lab::IssuerLab {
            proxy_address: "localhost:8443".into(),
            api_keys: ["k-default-0123456789abcdef", "k-tenant-b-0123456789abcdef"],
            control_plane: None,
            default_jobs: "",
            https: false,
        })
        .unwrap();
    let out = ssh_edge()
        .args(["issuer", "--check", "--config"])
        .arg(&good)
        .output_bounded();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("issuer configuration OK"));

    let bad = tmp.path().join("issuer-typo.toml");
    let text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&bad, format!("bogus = 1\n{text}")).unwrap();
    let out = ssh_edge()
        .args(["issuer", "--check", "--config"])
        .arg(&bad)
        .output_bounded();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("bogus: unknown key"), "{text}");
}

#[test]
fn environment_overrides_the_file_and_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).unwrap();
    let mut raw = lab.edge_config("127.0.0.1:0", "127.0.0.1:0").unwrap();
    raw.listen.ssh = Some("bogus".into());
    let file = lab.write_config(&raw).unwrap();

    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&file)
        .output_bounded();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen.ssh: \"bogus\""));

    // The variable fixes it; SSH_EDGE_CONFIG names the file instead of --config.
    let out = ssh_edge()
        .arg("check-config")
        .env("SSH_EDGE_CONFIG", &file)
        .env("SSH_EDGE_LISTEN__SSH", "127.0.0.1:2222")
        .output_bounded();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[test]
fn the_example_config_has_no_problems_but_its_missing_key_files() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&example)
        .output_bounded();
    let text = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    assert!(
        !problems.is_empty(),
        "expected missing-file problems: {text}"
    );
    for p in problems {
        assert!(
            p.contains("/etc/ssh-edge/")
                && (p.contains("No such file")
                    || p.contains("not a readable")
                    || p.contains("not found")),
            "unexpected problem in config/example.toml: {p}"
        );
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// One series' value in a scrape (`name{labels}` exactly), `None` if absent.
fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse::<f64>()
            .ok()
            .map(|v| v as u64)
    })
}

fn wait_until(timeout: std::time::Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    f()
}

/// The real binary running `ssh-edge run` on a lab config, with an ssh config for it.
struct RunningEdge {
    child: std::process::Child,
    lab: Lab,
    raw: ssh_edge::config::RawConfig,
    ssh: u16,
    admin: u16,
    ssh_config: std::path::PathBuf,
    /// The edge's stderr (its log), a file as under systemd or a collector.
    log: std::path::PathBuf,
    _tmp: tempfile::TempDir,
}

impl RunningEdge {
    fn start() -> RunningEdge {
        use ssh_edge::lab::{free_port, wait_for_port};
        use std::time::Duration;

        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).unwrap();
        let (tls, ssh, admin) = (free_port(), free_port(), free_port());
        let mut raw = lab
            .edge_config(&format!("127.0.0.1:{tls}"), &format!("127.0.0.1:{ssh}"))
            .unwrap();
        raw.listen.admin = Some(format!("127.0.0.1:{admin}"));
        let file = lab.write_config(&raw).unwrap();
        let log = tmp.path().join("edge.log");
        let child = ssh_edge()
            .args(["run", "--config"])
            .arg(&file)
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        if !wait_for_port(ssh, Duration::from_secs(20)) {
            process::never_listened(child, &format!("the edge on port {ssh}"), &log);
        }
        let key = lab
            .issue_user_certificate("k", "edge-user", &["abc1234"], Duration::from_secs(600))
            .unwrap();
        let ssh_config = lab
            .write_ssh_config(
                &key,
                std::path::Path::new(env!("CARGO_BIN_EXE_ssh-edge")),
                tls,
                ssh,
            )
            .unwrap();
        RunningEdge {
            child,
            lab,
            raw,
            ssh,
            admin,
            ssh_config,
            log,
            _tmp: tmp,
        }
    }

    /// `ssh … command` to the job through front C, not yet waited for.
    fn ssh(&self, command: &str) -> std::process::Child {
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(&self.ssh_config)
            .args([
                "-o",
                "BatchMode=yes",
                "training-job-abc1234-0@127.0.0.1",
                command,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// `ssh … ECHO_ONE_LINE` to the job, once it said `ready` and the edge counts exactly
    /// one open session: open *now*, before whatever the test does next.
    fn live_session(&self) -> Live {
        let mut live = Live::spawn(
            std::process::Command::new("ssh")
                .arg("-F")
                .arg(&self.ssh_config)
                .args([
                    "-o",
                    "BatchMode=yes",
                    "training-job-abc1234-0@127.0.0.1",
                    ECHO_ONE_LINE,
                ]),
        );
        live.expect_line("ready", std::time::Duration::from_secs(60));
        let active = "ssh_edge_sessions_active";
        assert!(
            wait_until(std::time::Duration::from_secs(20), || metric(
                &self.metrics(),
                active
            ) == Some(1)),
            "{active} is not 1: {}",
            self.metrics()
        );
        live
    }

    fn signal(&self, name: &str) {
        assert!(
            std::process::Command::new("kill")
                .args([name, &self.child.id().to_string()])
                .status_bounded()
                .success()
        );
    }

    fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_reloads_the_config_for_new_logins_and_keeps_open_sessions() {
    use std::time::Duration;

    let mut edge = RunningEdge::start();
    let mut open = edge.live_session();
    // Revoke the user's key id and reload, keeping open sessions open (with the default,
    // `kill_revoked_sessions`, they would end: tests/door/sessions.rs).
    edge.raw.remotes.get_mut("default").unwrap().revoked_key_ids = vec!["edge-user".into()];
    edge.raw.auth.kill_revoked_sessions = false;
    edge.lab.write_config(&edge.raw).unwrap();
    edge.signal("-HUP");
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &edge.metrics(),
            "ssh_edge_config_reloads_total{outcome=\"ok\"}"
        ) == Some(1)),
        "reload not counted: {}",
        edge.metrics()
    );
    // New logins follow the new config...
    let denied = wait_output(edge.ssh("echo let-in"), Duration::from_secs(60));
    assert!(
        !denied.status.success(),
        "a revoked key id logged in after the reload"
    );
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Permission denied"));
    assert_eq!(
        metric(
            &edge.metrics(),
            "ssh_edge_auth_failures_total{reason=\"revoked\"}"
        ),
        Some(1)
    );
    // ...the session opened before it carries on: a line sent now comes back.
    open.send_last("after-hup");
    let (status, rest, err) = open.finish(Duration::from_secs(30));
    assert_eq!(rest, ["got after-hup"], "{err}");
    assert!(status.success(), "{err}");

    // A broken config is refused; the running one stays (still revoking).
    std::fs::write(edge.lab.path("edge.toml"), "[listen]\nssh = \"nonsense\"\n").unwrap();
    edge.signal("-HUP");
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &edge.metrics(),
            "ssh_edge_config_reloads_total{outcome=\"error\"}"
        ) == Some(1)),
        "failed reload not counted: {}",
        edge.metrics()
    );
    let still_denied = wait_output(edge.ssh("echo let-in"), Duration::from_secs(60));
    assert!(!still_denied.status.success());
    assert!(std::net::TcpStream::connect(("127.0.0.1", edge.ssh)).is_ok());
    assert!(
        edge.child.try_wait().unwrap().is_none(),
        "the edge died on a bad reload"
    );
}

#[test]
fn sigterm_closes_the_listeners_and_lets_open_sessions_finish() {
    use std::time::Duration;

    let mut edge = RunningEdge::start();
    let (ssh, admin) = (edge.ssh, edge.admin);
    let mut session = edge.live_session();
    assert!(http_get(admin, "/readyz").starts_with("HTTP/1.1 200"));

    edge.signal("-TERM");
    // Listeners close and readiness fails at once; the open session carries on.
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.1",
            ssh
        ))
        .is_err()),
        "the SSH listener still accepts after SIGTERM"
    );
    assert!(
        http_get(admin, "/readyz").starts_with("HTTP/1.1 503"),
        "readyz not failing while draining"
    );
    session.send_last("after-term");
    let (status, rest, err) = session.finish(Duration::from_secs(30));
    assert_eq!(rest, ["got after-term"], "{err}");
    assert!(status.success(), "{err}");
    // Then the edge exits by itself.
    let status = wait_exit(&mut edge.child, Duration::from_secs(30));
    assert!(status.success(), "edge exit after draining: {status}");
}

/// The demo as a newcomer runs it: its sleeping workload wakes on the first `ssh`, which
/// shows the progress banners and lands.
#[test]
fn the_demo_wakes_its_sleeping_workload_on_the_first_ssh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("lab");
    let demo = ssh_edge()
        .args(["demo", "--tls-port", "0", "--ssh-port", "0", "--dir"])
        .arg(&dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SIGTERM (not SIGKILL): the demo then stops its sshds, the woken one included.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new("kill").arg(self.0.id().to_string()).status();
            // Bounded: a demo that ignores SIGTERM is killed rather than hang the test.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _demo = Stop(demo);
    let env_file = dir.join("demo.env");
    assert!(
        wait_until(std::time::Duration::from_secs(60), || env_file.exists()),
        "the demo did not start"
    );
    let env = std::fs::read_to_string(&env_file).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("demo.env has no {name}: {env}"))
            .to_string()
    };
    let sleepy_port: u16 = var("SLEEPY_PORT").parse().unwrap();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", sleepy_port)).is_err(),
        "the sleeping workload's sshd runs before anyone connected"
    );
    let out = run_with_timeout(
        Command::new("ssh").args([
            "-F",
            &var("SSH_CONFIG"),
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=INFO",
            &var("SLEEPY_HOST"),
            "echo woke",
        ]),
        std::time::Duration::from_secs(120),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("woke"));
    assert!(
        stderr.contains("ssh-edge: waking training job sleepy1 (on-demand session) ... 0 s")
            && stderr.contains("ssh-edge: training job sleepy1 is up after"),
        "{stderr}"
    );
}

/// The log is a file here: plain text, no colour codes. A certificate whose CA signature was
/// tampered with (refused inside russh, before the edge's policy) is counted and its log line
/// carries the peer's address, key id and serial.
#[test]
fn a_tampered_certificate_is_counted_and_logged_with_the_peer_in_plain_text() {
    use cert_login::{fresh_cert, login_with_cert, tamper_signature};

    let edge = RunningEdge::start();
    let now = ssh_edge::time::unix_now();
    let (key, cert) = fresh_cert(&edge.lab.user_ca, "abc1234", false, now - 60, now + 600);
    let (accepted, peer) = login_with_cert(
        ([127, 0, 0, 1], edge.ssh).into(),
        "training-job-abc1234-0",
        key,
        tamper_signature(&cert),
    );
    assert!(!accepted, "a tampered certificate opened a session");

    let metrics = edge.metrics();
    let series = "ssh_edge_auth_failures_total{reason=\"bad_signature\"} ";
    let value = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series))
        .unwrap_or_else(|| panic!("no bad_signature series in:\n{metrics}"));
    assert_eq!(value.trim(), "1", "{metrics}");

    // russh refuses the certificate right after the edge's hook has logged it, so the line is
    // written before the client sees the refusal.
    let log = std::fs::read_to_string(&edge.log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("certificate refused") && l.contains("bad_signature"))
        .unwrap_or_else(|| panic!("no refusal line in:\n{log}"));
    for expected in [
        format!("client={peer}"),
        "key_id=\"russh-presented\"".to_string(),
        "serial=4711".to_string(),
        "target=\"training-job-abc1234-0.ssh.baseten.co\"".to_string(),
    ] {
        assert!(line.contains(&expected), "{expected} missing: {line}");
    }
    assert!(!log.contains('\x1b'), "colour codes in a log file:\n{log}");
}
