//! The audit stream of a real session: it ran a command, opened a `-L` forward and was ended
//! by an administrator; the audit file holds exactly those events, as JSON lines.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssh_edge::lab::free_port;

use crate::harness::{Door, USER};

#[test]
fn a_sessions_audit_trail_holds_its_exec_forward_and_kill() {
    let door = Door::start(|raw, lab| raw.audit.file = Some(lab.path("audit.jsonl")));
    let local = free_port();
    let forward = format!("{local}:127.0.0.1:{}", door.lab.sshd_port);
    let key = door.user_key.display().to_string();
    let mut child = Command::new("ssh")
        .arg("-F")
        .arg(&door.ssh_config)
        .args(["-o", "BatchMode=yes", "-i", &key, "-o"])
        .arg(format!("CertificateFile={key}-cert.pub"))
        .args(["-L", &forward, &format!("{USER}@127.0.0.1")])
        .arg("echo hi; sleep 60")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "hi\n");
    // Through the forward: the backend's sshd greets.
    let mut tunnel = std::net::TcpStream::connect(("127.0.0.1", local)).unwrap();
    tunnel
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 8];
    tunnel.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"SSH-2.0-");
    drop(tunnel);

    // End it by id through the admin API.
    let list = crate::harness::http_get(door.admin, "/sessions", None);
    let id = list
        .split("\"id\":")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no session listed: {list}"));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", door.admin)).unwrap();
    write!(
        s,
        "DELETE /sessions/{id}?reason=audit%20test HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the session did not end");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The session's end is the last event: wait for it, then read the whole trail.
    let path = door.lab.path("audit.jsonl");
    let deadline = Instant::now() + Duration::from_secs(20);
    let events: Vec<serde_json::Value> = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if events.iter().any(|e| e["event"] == "session.end") {
            break events;
        }
        assert!(Instant::now() < deadline, "no session.end in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "session.start",
            "channel.open",
            "exec",
            "channel.open",
            "session.killed",
            "session.end"
        ],
        "{events:#?}"
    );
    assert!(events.iter().all(|e| e["v"] == 1 && e["ts"].is_u64()));
    let start = &events[0];
    assert_eq!(start["id"], id);
    assert_eq!(start["key_id"], "door-user");
    assert_eq!(start["target"], "training-job-abc1234-0.ssh.baseten.co");
    assert_eq!(events[1]["type"], "session");
    assert_eq!(events[2]["command"], "echo hi; sleep 60");
    assert_eq!(events[3]["type"], "direct-tcpip");
    assert_eq!(events[3]["to"], format!("127.0.0.1:{}", door.lab.sshd_port));
    assert_eq!(events[4]["reason"], "audit test");
    assert!(
        events[4]["by"]
            .as_str()
            .unwrap()
            .starts_with("DELETE /sessions/")
    );
    assert_eq!(events[5]["reason"], "killed");
    assert!(events[5]["bytes_down"].as_u64().unwrap() > 0);
    for e in &events[1..] {
        if let Some(session) = e.get("session") {
            assert_eq!(*session, serde_json::json!(id));
        }
    }
}
