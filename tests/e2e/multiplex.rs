//! One connection, many uses: OpenSSH ControlMaster reuse (as VS Code does), 50 concurrent
//! exec and forwarded channels on it with verified data, and keepalives that detect a frozen
//! client and clean its session up.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::world::*;

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn control_master_carries_fifty_concurrent_exec_and_forwarded_channels_on_one_login() {
    let w = World::start();
    let (_http, http_port, file) = crate::forwarding::http_server(&w);
    let control = w.lab.path("cm.sock");
    let args = w.ssh_args_muxed(Via::Connect, HOST, &control);
    let (opts, dest) = args.split_at(args.len() - 1);
    let out = run_with_timeout(
        Command::new("ssh").args(&args).arg("echo first"),
        Duration::from_secs(60),
    );
    assert_eq!(stdout(&out), "first\n", "{}", stderr(&out));
    // A local forward on the master, as VS Code adds for its server port.
    let local = ssh_edge::lab::free_port();
    let out = run_with_timeout(
        Command::new("ssh")
            .args(opts)
            .args([
                "-O",
                "forward",
                "-L",
                &format!("{local}:127.0.0.1:{http_port}"),
            ])
            .args(dest),
        Duration::from_secs(30),
    );
    assert!(out.status.success(), "-O forward: {}", stderr(&out));

    // 40 exec channels (each a different length, checked by hash) and 10 forwarded fetches
    // of a 2 MiB file, all at once over the master.
    let mut children = Vec::new();
    for i in 0..40 {
        let cmd = format!("head -c {} /dev/zero | sha256sum", 100_000 + i * 1000);
        let child = Command::new("ssh")
            .args(&args)
            .arg(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push((i, child));
    }
    let fetches: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(move || crate::forwarding::http_get(local, "/model.bin")))
        .collect();
    for (i, child) in children {
        let out = wait_output(child, Duration::from_secs(120));
        let expected = sha256(&vec![0u8; 100_000 + i * 1000]);
        assert!(
            stdout(&out).starts_with(&expected),
            "channel {i}: {} {}",
            stdout(&out),
            stderr(&out)
        );
    }
    for (i, fetch) in fetches.into_iter().enumerate() {
        let body = fetch.join().unwrap().expect("fetch through the forward");
        assert_eq!(sha256(&body), sha256(&file), "forwarded fetch {i} differs");
    }
    // All of it went over one login.
    assert_eq!(
        w.metric("ssh_edge_logins_total{front=\"tls\"}"),
        1,
        "{}",
        w.metrics.render()
    );
    assert!(w.metric("ssh_edge_channels_total{outcome=\"opened\"}") >= 41);
    assert!(w.metric("ssh_edge_channels_total{outcome=\"opened_direct_tcpip\"}") >= 10);
    let _ = Command::new("ssh")
        .args(opts)
        .args(["-O", "exit"])
        .args(dest)
        .output_bounded();
}

#[test]
fn keepalives_detect_a_frozen_client_and_clean_up_its_session() {
    let w = World::start_with(|raw| {
        raw.ssh.keepalive_interval_secs = 1;
        raw.ssh.keepalive_max = 2;
    });
    let mut args = w.ssh_args(Via::PlainSsh, HOST);
    let dest = args.pop().unwrap();
    args.extend([dest, "sleep 120".to_string()]);
    let mut child = Command::new("ssh")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(30), || w
            .metric("ssh_edge_sessions_active")
            == 1),
        "session never became active"
    );
    // An idle but live session survives several keepalive intervals.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        w.metric("ssh_edge_sessions_active"),
        1,
        "a live idle session was dropped"
    );
    // Freeze the client: it stops answering keepalives.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status_bounded()
            .success()
    );
    let cleaned = wait_until(Duration::from_secs(30), || {
        w.metric("ssh_edge_sessions_active") == 0
    });
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        cleaned,
        "the edge kept a dead client's session: {}",
        w.metrics.render()
    );
}
