//! Port forwarding through the terminating fronts: `ssh -L` and `ssh -D` reach a service
//! listening inside the backend (an HTTP server on the backend's loopback), and a certificate
//! without `permit-port-forwarding` is refused cleanly and counted.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::world::*;

pub struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP server "inside the workload", serving one 2 MiB file.
pub fn http_server(w: &World) -> (Killed, u16, Vec<u8>) {
    let root = w.lab.path("www");
    std::fs::create_dir_all(&root).unwrap();
    let data: Vec<u8> = (0..2u32 << 20)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    std::fs::write(root.join("model.bin"), &data).unwrap();
    let port = ssh_edge::lab::free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        ssh_edge::lab::wait_for_port(port, Duration::from_secs(10)),
        "http server did not start"
    );
    (Killed(child), port, data)
}

pub fn http_get(port: u16, path: &str) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut all = Vec::new();
    s.read_to_end(&mut all).ok()?;
    let split = all.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(all[split + 4..].to_vec())
}

/// Stops a forwarding ssh and returns what it printed.
fn stop_and_read_stderr(mut fwd: Killed) -> String {
    let _ = fwd.0.kill();
    let mut err = String::new();
    if let Some(mut e) = fwd.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// Starts `ssh -N <forward>` and waits until its local port accepts connections.
fn forward(w: &World, key: &std::path::Path, via: Via, spec: &[&str], local: u16) -> Killed {
    let mut args = w.ssh_args_with_key(key, via, HOST);
    let dest = args.pop().unwrap();
    args.extend([
        "-N".to_string(),
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
    ]);
    args.extend(spec.iter().map(|s| s.to_string()));
    args.push(dest);
    let child = Command::new("ssh")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", local)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

#[test]
fn local_and_dynamic_forwarding_reach_services_inside_the_backend() {
    let w = World::start();
    let (_server, port, data) = http_server(&w);
    for via in [Via::Connect, Via::PlainSsh] {
        let local = ssh_edge::lab::free_port();
        let _fwd = forward(
            &w,
            &w.user_key,
            via,
            &["-L", &format!("{local}:127.0.0.1:{port}")],
            local,
        );
        let got = http_get(local, "/model.bin").expect("fetch through -L");
        assert_eq!(
            sha256(&got),
            sha256(&data),
            "{via:?}: file through -L differs"
        );

        let socks = ssh_edge::lab::free_port();
        let _dyn = forward(
            &w,
            &w.user_key,
            via,
            &["-D", &format!("127.0.0.1:{socks}")],
            socks,
        );
        let out = run_with_timeout(
            Command::new("curl")
                .args([
                    "-sS",
                    "--max-time",
                    "30",
                    "--socks5-hostname",
                    &format!("127.0.0.1:{socks}"),
                ])
                .arg(format!("http://localhost:{port}/model.bin")),
            Duration::from_secs(60),
        );
        assert!(
            out.status.success(),
            "{via:?}: curl via -D: {}",
            stderr(&out)
        );
        assert_eq!(
            sha256(&out.stdout),
            sha256(&data),
            "{via:?}: file through -D differs"
        );
    }
    assert!(w.metric("ssh_edge_channels_total{outcome=\"opened_direct_tcpip\"}") >= 4);
}

#[test]
fn forwarding_is_refused_without_permit_port_forwarding() {
    let w = World::start();
    let (_server, port, _) = http_server(&w);
    let key = w.keygen_cert(
        "nofwd",
        "user_ca",
        Some(JOB),
        "+10m",
        &["-O", "no-port-forwarding"],
    );
    let local = ssh_edge::lab::free_port();
    // OpenSSH reports refused forwards at INFO level.
    let spec = [
        "-o",
        "LogLevel=INFO",
        "-L",
        &format!("{local}:127.0.0.1:{port}"),
    ];
    let fwd = forward(&w, &key, Via::PlainSsh, &spec, local);
    // The local listener exists, but every forwarded connection is refused by the edge.
    let got = http_get(local, "/model.bin");
    assert!(
        got.is_none_or(|body| body.is_empty()),
        "forwarding worked without permit-port-forwarding"
    );
    let err = stop_and_read_stderr(fwd);
    assert!(
        err.contains("administratively prohibited"),
        "ssh did not report the refusal: {err}"
    );
    assert!(w.metric("ssh_edge_channels_total{outcome=\"denied_port_forwarding\"}") >= 1);
}

#[test]
fn remote_forwarding_serves_a_client_side_file_to_the_backend() {
    let w = World::start();
    // The HTTP server runs on the user's side; the backend reaches it through `-R`.
    let (_server, client_port, data) = http_server(&w);
    let backend_port = ssh_edge::lab::free_port();
    for via in [Via::Connect, Via::PlainSsh] {
        let spec = [
            "-R",
            &format!("127.0.0.1:{backend_port}:127.0.0.1:{client_port}"),
        ];
        let _fwd = forward(&w, &w.user_key, via, &spec, backend_port);
        let fetch =
            format!("curl -sS --max-time 20 http://127.0.0.1:{backend_port}/model.bin | sha256sum");
        let out = w.ssh(via, HOST, &[], &fetch);
        assert!(
            stdout(&out).starts_with(&sha256(&data)),
            "{via:?}: file fetched inside the backend differs: {} {}",
            stdout(&out),
            stderr(&out)
        );
        drop(_fwd);
        // The backend stops listening once the forwarding session ends.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", backend_port)).is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct Agent {
    sock: std::path::PathBuf,
    pid: String,
}
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

fn start_agent(w: &World, key: &std::path::Path) -> Agent {
    let sock = w.lab.path("agent.sock");
    let out = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .output_bounded();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pid = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .to_string();
    let added = Command::new("ssh-add")
        .arg(key)
        .env("SSH_AUTH_SOCK", &sock)
        .output_bounded();
    assert!(
        added.status.success(),
        "ssh-add: {}",
        String::from_utf8_lossy(&added.stderr)
    );
    Agent { sock, pid }
}

#[test]
fn agent_forwarding_lists_the_users_keys_and_serves_a_nested_ssh() {
    let w = World::start();
    let agent = start_agent(&w, &w.user_key);
    let fingerprint = stdout(
        &Command::new("ssh-keygen")
            .arg("-lf")
            .arg(w.user_key.with_extension("pub"))
            .output_bounded(),
    );
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();
    let nested = format!(
        "ssh-add -l; ssh -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -p {} {}@127.0.0.1 echo nested-ok",
        w.lab.sshd_port, w.lab.login_user
    );
    for via in [Via::Connect, Via::PlainSsh] {
        let mut args = w.ssh_args(via, HOST);
        let dest = args.pop().unwrap();
        args.extend(["-A".to_string(), dest, nested.clone()]);
        let out = run_with_timeout(
            Command::new("ssh")
                .args(&args)
                .env("SSH_AUTH_SOCK", &agent.sock),
            Duration::from_secs(60),
        );
        let text = stdout(&out);
        assert!(
            text.contains(&fingerprint),
            "{via:?}: ssh-add -l inside the backend: {text} {}",
            stderr(&out)
        );
        assert!(
            text.contains("nested-ok"),
            "{via:?}: nested ssh with the forwarded agent: {text} {}",
            stderr(&out)
        );
    }
}

#[test]
fn agent_forwarding_is_refused_without_permit_agent_forwarding() {
    let w = World::start();
    let key = w.keygen_cert(
        "noagent",
        "user_ca",
        Some(JOB),
        "+10m",
        &["-O", "no-agent-forwarding"],
    );
    let agent = start_agent(&w, &key);
    let mut args = w.ssh_args_with_key(&key, Via::PlainSsh, HOST);
    let dest = args.pop().unwrap();
    args.extend(["-A".to_string(), dest, "ssh-add -l; echo rc=$?".to_string()]);
    let out = run_with_timeout(
        Command::new("ssh")
            .args(&args)
            .env("SSH_AUTH_SOCK", &agent.sock),
        Duration::from_secs(60),
    );
    let text = stdout(&out) + &stderr(&out);
    assert!(
        text.contains("rc=2"),
        "the backend reached an agent without permit-agent-forwarding: {text}"
    );
    assert!(w.metric("ssh_edge_channels_total{outcome=\"denied_agent_forwarding\"}") >= 1);
}

#[test]
fn a_route_can_deny_forwarding_that_the_certificate_permits() {
    let w = World::start_with(|raw| {
        for route in &mut raw.routes {
            route.port_forwarding = Some(false);
            route.agent_forwarding = Some(false);
        }
    });
    let (_server, port, _) = http_server(&w);
    let local = ssh_edge::lab::free_port();
    let spec = [
        "-o",
        "LogLevel=INFO",
        "-L",
        &format!("{local}:127.0.0.1:{port}"),
    ];
    let fwd = forward(&w, &w.user_key, Via::Connect, &spec, local);
    assert!(
        http_get(local, "/model.bin").is_none_or(|b| b.is_empty()),
        "route allowed -L"
    );
    let err = stop_and_read_stderr(fwd);
    assert!(err.contains("administratively prohibited"), "{err}");

    let agent = start_agent(&w, &w.user_key);
    let mut args = w.ssh_args(Via::Connect, HOST);
    let dest = args.pop().unwrap();
    args.extend(["-A".to_string(), dest, "ssh-add -l; echo rc=$?".to_string()]);
    let out = run_with_timeout(
        Command::new("ssh")
            .args(&args)
            .env("SSH_AUTH_SOCK", &agent.sock),
        Duration::from_secs(60),
    );
    assert!(
        stdout(&out).contains("rc=2"),
        "route allowed -A: {}",
        stdout(&out)
    );
    assert!(w.metric("ssh_edge_channels_total{outcome=\"denied_port_forwarding\"}") >= 1);
    assert!(w.metric("ssh_edge_channels_total{outcome=\"denied_agent_forwarding\"}") >= 1);
}

#[test]
fn remote_forwarding_can_be_cancelled_on_a_live_connection() {
    let w = World::start();
    let (_server, client_port, _) = http_server(&w);
    let control = w.lab.path("rcm.sock");
    let mut args = w.ssh_args_muxed(Via::PlainSsh, HOST, &control);
    let dest = args.pop().unwrap();
    let out = run_with_timeout(
        Command::new("ssh").args(&args).arg(&dest).arg("true"),
        Duration::from_secs(60),
    );
    // Under heavy load OpenSSH's first mux client (the process that just backgrounded the
    // ControlPersist master) now and then exits 255 without a word while the master and its
    // session on the edge are fine; what this test needs is the live master, so ask it.
    let master_up = out.status.success()
        || run_with_timeout(
            Command::new("ssh")
                .args(&args)
                .args(["-O", "check"])
                .arg(&dest),
            Duration::from_secs(30),
        )
        .status
        .success();
    assert!(
        master_up,
        "status {:?}: {}",
        out.status.code(),
        stderr(&out)
    );
    let backend_port = ssh_edge::lab::free_port();
    let spec = format!("127.0.0.1:{backend_port}:127.0.0.1:{client_port}");
    let ctl = |op: &str| {
        run_with_timeout(
            Command::new("ssh")
                .args(&args)
                .args(["-O", op, "-R", &spec])
                .arg(&dest),
            Duration::from_secs(30),
        )
    };
    let out = ctl("forward");
    assert!(out.status.success(), "forward: {}", stderr(&out));
    assert!(
        ssh_edge::lab::wait_for_port(backend_port, Duration::from_secs(10)),
        "backend never listened"
    );
    let out = ctl("cancel");
    assert!(out.status.success(), "cancel: {}", stderr(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", backend_port)).is_ok() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        TcpStream::connect(("127.0.0.1", backend_port)).is_err(),
        "backend still listens after cancel"
    );
    let _ = Command::new("ssh")
        .args(&args)
        .args(["-O", "exit"])
        .arg(&dest)
        .output_bounded();
}

#[test]
fn a_remote_can_deny_remote_forwarding_and_keep_local_forwarding() {
    let w = World::start_with(|raw| {
        raw.remotes.get_mut("default").unwrap().remote_forwarding = Some(false);
    });
    let (_server, port, data) = http_server(&w);
    // -L still works for this remote's workloads...
    let local = ssh_edge::lab::free_port();
    let spec = ["-L", &format!("{local}:127.0.0.1:{port}")];
    let _fwd = forward(&w, &w.user_key, Via::PlainSsh, &spec, local);
    let got = http_get(local, "/model.bin").expect("fetch through -L");
    assert_eq!(sha256(&got), sha256(&data));
    // ...while -R is refused, and ssh says so.
    let backend_port = ssh_edge::lab::free_port();
    let mut args = w.ssh_args(Via::PlainSsh, HOST);
    let dest = args.pop().unwrap();
    args.extend([
        "-o".to_string(),
        "ExitOnForwardFailure=yes".into(),
        "-R".into(),
        format!("127.0.0.1:{backend_port}:127.0.0.1:{port}"),
        dest,
        "echo should-not-run".into(),
    ]);
    let out = run_with_timeout(Command::new("ssh").args(&args), Duration::from_secs(60));
    assert!(!out.status.success(), "-R was allowed: {}", stdout(&out));
    assert!(
        stderr(&out).contains("remote port forwarding failed"),
        "{}",
        stderr(&out)
    );
    assert!(w.metric("ssh_edge_channels_total{outcome=\"denied_remote_forwarding\"}") >= 1);
}
