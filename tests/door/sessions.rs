//! Sessions ops can see and end, through the admin API, with real OpenSSH clients: the list
//! shows a live session's key id, front and target; ending one by id shows the reason on the
//! client's stderr; ending by key id ends exactly that user's sessions on fronts A and C.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Door, USER};
use crate::process::Bounded;

/// A raw HTTP request to the admin endpoint; the whole response.
fn http(door: &Door, method: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", door.admin)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn body(response: &str) -> serde_json::Value {
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

/// `ssh … 'sleep 60'` through front C (or front A with `tls`), left running.
pub(crate) fn long_session(door: &Door, key: &std::path::Path, tls: bool) -> Child {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg(&door.ssh_config)
        .args(["-o", "BatchMode=yes", "-i"])
        .arg(key)
        .arg("-o")
        .arg(format!("CertificateFile={}-cert.pub", key.display()));
    if tls {
        cmd.arg("training-job-abc1234-0.ssh.baseten.co");
    } else {
        cmd.arg(format!("{USER}@{}", door.ip));
    }
    cmd.arg("echo started; sleep 60; echo finished")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit (at most 20 s); its stderr.
pub(crate) fn ended(mut child: Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the session did not end");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(
        !out.contains("finished"),
        "the session ran to its end: {out}"
    );
    err
}

fn sessions(door: &Door, query: &str) -> Vec<serde_json::Value> {
    body(&http(door, "GET", &format!("/sessions{query}")))["sessions"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn sessions_are_listed_and_ended_by_id_or_key_id() {
    let door = Door::start(|_, _| {});
    let other = door.keygen_cert("other", &[]);

    // One session: listed with its facts.
    let one = long_session(&door, &door.user_key, false);
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |n| {
        n == 1
    });
    let listed = sessions(&door, "");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let s = &listed[0];
    assert_eq!(s["key_id"], "door-user");
    assert_eq!(s["front"], "ssh");
    assert_eq!(s["target"], "training-job-abc1234-0.ssh.baseten.co");
    assert!(s["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let id = s["id"].as_u64().unwrap();
    // Its bytes are counted (the "started" line).
    let deadline = Instant::now() + Duration::from_secs(20);
    while sessions(&door, "")[0]["bytes_down"].as_u64().unwrap() < 8 {
        assert!(
            Instant::now() < deadline,
            "no bytes counted: {:?}",
            sessions(&door, "")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        body(&http(&door, "GET", &format!("/sessions/{id}")))["id"],
        id
    );

    // Ended by id: the client is told why.
    let r = http(
        &door,
        "DELETE",
        &format!("/sessions/{id}?reason=leaked%20key"),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let err = ended(one);
    assert!(
        err.contains("ssh-edge: session ended by an administrator: leaked key"),
        "{err}"
    );
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |n| {
        n == 0
    });
    assert!(http(&door, "GET", &format!("/sessions/{id}")).starts_with("HTTP/1.1 404"));

    // Ended by key id: the user's sessions on fronts A and C, not another user's.
    let c = long_session(&door, &door.user_key, false);
    let a = long_session(&door, &door.user_key, true);
    let bystander = long_session(&door, &other, false);
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |n| {
        n == 3
    });
    assert_eq!(sessions(&door, "?key_id=door-user").len(), 2);
    let r = http(
        &door,
        "POST",
        "/sessions/kill?key_id=door-user&reason=rotated",
    );
    assert_eq!(body(&r)["killed"].as_array().unwrap().len(), 2, "{r}");
    for child in [c, a] {
        assert!(ended(child).contains("ended by an administrator: rotated"));
    }
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |n| {
        n == 1
    });
    let left = sessions(&door, "");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["key_id"], "other-id");
    let mut bystander = bystander;
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was ended"
    );
    let _ = bystander.kill();
    // A kill that names nobody is refused, not "everyone".
    assert!(http(&door, "POST", "/sessions/kill").starts_with("HTTP/1.1 400"));
}

#[test]
fn a_reload_that_revokes_a_certificate_ends_its_open_sessions() {
    let mut raw = None;
    let door = Door::start(|r, _| raw = Some(r.clone()));
    let mut raw = raw.unwrap();
    let other = door.keygen_cert("other", &[]);
    let revoked = long_session(&door, &door.user_key, false);
    let bystander = long_session(&door, &other, false);
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |n| {
        n == 2
    });
    raw.remotes.get_mut("default").unwrap().revoked_key_ids = vec!["door-user".into()];
    door.lab.write_config(&raw).unwrap();
    assert!(
        Command::new("kill")
            .args(["-HUP", &door.pid().to_string()])
            .status_bounded()
            .success()
    );
    assert!(ended(revoked).contains("certificate revoked"));
    door.wait_metric(
        "ssh_edge_sessions_ended_total{reason=\"revoked\"}",
        Duration::from_secs(20),
        |n| n == 1,
    );
    let left = sessions(&door, "");
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["key_id"], "other-id");
    let mut bystander = bystander;
    assert!(bystander.try_wait().unwrap().is_none());
    let _ = bystander.kill();
}

#[test]
fn the_registry_shows_channels_and_activity_and_ends_are_counted_by_cause() {
    let door = Door::start(|raw, _| raw.listen.drain_timeout_secs = 1);
    // A finished command: the client ended it.
    let out = door.ssh(&door.user_key, &[], "echo hi");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    door.wait_metric(
        "ssh_edge_sessions_ended_total{reason=\"client\"}",
        Duration::from_secs(20),
        |n| n == 1,
    );
    // A live one: its session channel is listed, its activity noted.
    let child = long_session(&door, &door.user_key, false);
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |n| {
        n == 1
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = sessions(&door, "").remove(0);
        if s["channels"]["session"] == 1 {
            break s;
        }
        assert!(Instant::now() < deadline, "channel never listed: {s}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(s["last_activity"].as_u64().unwrap() >= s["started"].as_u64().unwrap());
    // SIGTERM with a 1 s drain: the session still open is told why it ends.
    assert!(
        Command::new("kill")
            .args(["-TERM", &door.pid().to_string()])
            .status_bounded()
            .success()
    );
    let err = ended(child);
    assert!(
        err.contains("ssh-edge: session ended: this edge is shutting down; reconnect"),
        "{err}"
    );
}
