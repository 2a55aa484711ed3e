//! Exec, exit codes, signals, stdout/stderr separation and interactive pty sessions, through
//! every front.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::world::*;

#[test]
fn exec_keeps_stdout_and_stderr_apart_and_propagates_exit_codes_on_every_front() {
    let w = World::start();
    for via in ALL_FRONTS {
        let out = w.ssh(via, HOST, &[], "echo out-line; echo err-line >&2; exit 0");
        assert_eq!(out.status.code(), Some(0), "{via:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "out-line\n", "{via:?}");
        assert!(
            stderr(&out).contains("err-line"),
            "{via:?}: stderr {:?}",
            stderr(&out)
        );
        assert!(!stdout(&out).contains("err-line"), "{via:?}");

        let out = w.ssh(via, HOST, &[], "exit 7");
        assert_eq!(out.status.code(), Some(7), "{via:?}: {}", stderr(&out));

        // Killed by a signal: the backend's exit-signal reaches the client (OpenSSH then
        // exits 255; its debug log names the request, which is how we know it arrived).
        let out = w.ssh(via, HOST, &["-o", "LogLevel=DEBUG1"], "kill -TERM $$");
        assert_eq!(out.status.code(), Some(255), "{via:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("rtype exit-signal"),
            "{via:?}: {}",
            stderr(&out)
        );
    }
    assert!(w.metric("ssh_edge_logins_total{front=\"tls\"}") >= 6);
    assert!(w.metric("ssh_edge_logins_total{front=\"ssh\"}") >= 3);
}

#[test]
fn the_backend_sees_the_route_login_user_and_the_minted_certificate() {
    let w = World::start();
    let out = w.ssh(Via::Connect, HOST, &[], "id -un");
    assert_eq!(stdout(&out).trim(), w.lab.login_user);
    // The backend's sshd logs the minted certificate's key id, which names the user's cert.
    let log = std::fs::read_to_string(w.lab.path("sshd.log")).unwrap();
    assert!(
        log.contains("user_key_id=alice@example"),
        "sshd log lacks the minted key id:\n{log}"
    );
}

#[test]
fn stdin_reaches_the_backend_and_eof_ends_the_command() {
    let w = World::start();
    for via in ALL_FRONTS {
        let mut args = w.ssh_args(via, HOST);
        args.push("sha256sum".into());
        let mut child = Command::new("ssh")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        child.stdin.take().unwrap().write_all(&payload).unwrap();
        let out = wait_output(child, Duration::from_secs(120));
        let expected = sha256_hex(&payload);
        assert!(
            stdout(&out).starts_with(&expected),
            "{via:?}: {}",
            stdout(&out)
        );
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Collects a child's output on a thread, so waits can have deadlines.
struct Collector(std::sync::Arc<std::sync::Mutex<String>>);

impl Collector {
    fn spawn(mut r: impl Read + Send + 'static) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Collector(seen)
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.0.lock().unwrap().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

#[test]
fn interactive_pty_session_sees_window_size_changes() {
    // `script` gives ssh a real terminal; a background job resizes that terminal when the test
    // says so, the kernel sends SIGWINCH to ssh, and ssh sends window-change through the edge.
    let w = World::start();
    for via in [Via::Connect, Via::PlainSsh] {
        let trigger = w.lab.path(&format!("resize-{via:?}"));
        let mut args = w.ssh_args(via, HOST);
        args.insert(0, "-tt".into());
        let quoted = args
            .iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ");
        let shell = format!(
            "stty cols 91 rows 33; (while [ ! -e {t} ]; do sleep 0.05; done; stty cols 120 rows 40 </dev/tty) & exec ssh {quoted}",
            t = trigger.display()
        );
        let mut child = Command::new("script")
            .args(["-q", "-e", "-c", &shell, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script(1) from util-linux");
        let mut stdin = child.stdin.take().unwrap();
        let out = Collector::spawn(child.stdout.take().unwrap());
        let wait = Duration::from_secs(30);
        stdin
            .write_all(b"tty; echo SIZE-$(stty size)-END\n")
            .unwrap();
        let ok = out.wait_for("SIZE-33 91-END", wait);
        if !ok {
            let _ = child.kill();
        }
        assert!(ok, "{via:?}: initial size not seen: {:?}", out.text());
        assert!(
            out.text().contains("/dev/pts/"),
            "{via:?}: backend has no pty: {:?}",
            out.text()
        );
        std::fs::write(&trigger, b"").unwrap();
        // Ask until the backend reports the new size (each answer is a fresh `stty size`).
        let deadline = Instant::now() + wait;
        let mut resized = false;
        while !resized && Instant::now() < deadline {
            stdin.write_all(b"echo NEW-$(stty size)-END\n").unwrap();
            resized = out.wait_for("NEW-40 120-END", Duration::from_millis(300));
        }
        if !resized {
            let _ = child.kill();
        }
        assert!(
            resized,
            "{via:?}: window change never reached the backend: {:?}",
            out.text()
        );
        stdin.write_all(b"exit 3\n").unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(60));
        assert_eq!(status.code(), Some(3), "{via:?}: {}", out.text());
    }
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn admin_endpoint_serves_metrics_and_health() {
    let w = World::start();
    let out = w.ssh(Via::PlainSsh, HOST, &[], "echo hi");
    assert_eq!(stdout(&out).trim(), "hi");
    let metrics = http_get(w.admin_port, "/metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert_eq!(
        metric_value(&metrics, "ssh_edge_logins_total{front=\"ssh\"}"),
        1,
        "{metrics}"
    );
    assert!(http_get(w.admin_port, "/healthz").ends_with("ok\n"));
    assert!(http_get(w.admin_port, "/nope").starts_with("HTTP/1.1 404"));
}

#[test]
fn a_node_number_of_twenty_digits_is_refused_naming_the_field_and_the_bound() {
    let w = World::start();
    let host = "training-job-abc1234-99999999999999999999.ssh.baseten.co";
    let (code, text) = crate::failures::ssh_loose(&w, Via::PlainSsh, host);
    assert_eq!(code, Some(255), "{text}");
    assert!(!text.contains("inside"), "{text}");
    assert!(
        text.contains("<node> has 20 digits, over the limit of 9 (0 to 999999999)"),
        "{text}"
    );
    assert!(
        w.metric(
            "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"number_too_long\"}"
        ) == 1,
        "{}",
        w.metrics.render()
    );
}
