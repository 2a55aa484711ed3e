//! The server's lifecycle driven in-process through `ssh_edge::server` (what the binary maps
//! SIGHUP and SIGTERM onto): a reload takes a valid config and refuses a broken one, and a
//! shutdown closes the listeners but waits for the open session, whose bytes still arrive.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::world::*;

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

fn reloads(w: &World, outcome: &str) -> u64 {
    w.live
        .current()
        .metrics
        .config_reloads
        .with_label_values(&[outcome])
        .get()
}

#[test]
fn reload_takes_a_valid_config_and_keeps_the_running_one_when_broken() {
    let w = World::start();
    let good = std::fs::read_to_string(&w.config_path).expect("config file");
    // Valid: the same config again (the listen addresses must stay).
    w.reload();
    assert!(
        wait_until(Duration::from_secs(10), || reloads(&w, "ok") == 1),
        "reload ok count is {}",
        reloads(&w, "ok")
    );
    // Broken: every problem logged, the running generation stays and serves new logins.
    std::fs::write(&w.config_path, format!("{good}\n[listen\n")).expect("write config");
    w.reload();
    assert!(
        wait_until(Duration::from_secs(10), || reloads(&w, "error") == 1),
        "reload error count is {}",
        reloads(&w, "error")
    );
    assert_eq!(reloads(&w, "ok"), 1);
    let out = w.ssh(Via::PlainSsh, HOST, &[], "echo still-serving");
    assert_eq!(stdout(&out), "still-serving\n", "{}", stderr(&out));
}

#[test]
fn shutdown_closes_the_door_and_waits_for_the_open_session() {
    let mut w = World::start_with(|raw| raw.listen.drain_timeout_secs = 120);
    let mut args = w.ssh_args(Via::PlainSsh, HOST);
    let dest = args.pop().expect("destination");
    let mut session = Command::new("ssh")
        .args(&args)
        .arg("-T")
        .arg(dest)
        .arg("read line; echo got:$line")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh starts");
    let sessions = |w: &World| w.live.current().sessions.count();
    assert!(
        wait_until(Duration::from_secs(30), || sessions(&w) == 1),
        "the session never opened (open sessions: {})",
        sessions(&w)
    );
    let ssh_port = w.ssh_port;
    let wait_ended = w.shut_down();
    // The door closes while the session is still open.
    assert!(
        wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", ssh_port)).is_err()
        }),
        "the SSH listener still accepts after shutdown"
    );
    let mut stdin = session.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").expect("write to the session");
    drop(stdin);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = session
            .stdout
            .take()
            .map(|mut o| o.read_to_string(&mut out));
        let _ = tx.send((out, session.wait()));
    });
    let (out, status) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the session's ssh did not end within 30 s");
    assert_eq!(out, "got:hello\n");
    let status = status.expect("ssh status");
    assert!(status.success(), "ssh exited with {status}");
    assert!(
        wait_ended(Duration::from_secs(30)),
        "the server did not stop after its last session ended"
    );
}
