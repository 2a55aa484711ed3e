//! `ssh-edge sessions list|kill` across replicas: three real edges on 127.0.0.1, .2 and .3
//! (the admin endpoint on the same port of each, as behind a headless Service), found through
//! a real DNS server (dnsmasq: three A records, and SRV records), real OpenSSH sessions on
//! each. The list shows every session with the replica that holds it; a kill by key id ends
//! that user's sessions on every replica and no one else's; a stopped replica is named as
//! unreachable and the exit status says the answer is incomplete.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use serde_json::Value;
use ssh_edge::lab::free_port;

use crate::harness::{Door, run_with_timeout, text};
use crate::sessions::{ended, long_session};

/// Exit status of `ssh-edge sessions` when some replica did not answer.
const INCOMPLETE: i32 = 3;

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A port free on 127.0.0.1, 127.0.0.2 and 127.0.0.3 alike (each edge's admin listener).
fn port_free_on_all() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        let free = [2, 3]
            .into_iter()
            .all(|last| std::net::TcpListener::bind((loopback(last), port)).is_ok());
        if port != 0 && free {
            return port;
        }
    }
    panic!("no port free on 127.0.0.1, .2 and .3");
}

fn wait_sessions(door: &Door, n: u64) {
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |v| {
        v == n
    });
}

/// `ssh-edge sessions ARGS` with `env`, bounded in time.
fn sessions(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ssh-edge"));
    cmd.arg("sessions")
        .args(args)
        .env_remove("SSH_EDGE_ADMIN_TOKEN_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(30))
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// (replica, key id or subject, id) of every session listed, sorted.
fn listed(v: &Value) -> Vec<(String, String, u64)> {
    let mut all: Vec<_> = v["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array: {v}"))
        .iter()
        .map(|s| {
            (
                s["replica"].as_str().unwrap_or_default().to_string(),
                s["key_id"].as_str().unwrap_or_default().to_string(),
                s["id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    all.sort();
    all
}

/// The sessions an edge itself lists (its admin API, directly): (key id, id).
fn own_sessions(door: &Door) -> Vec<(String, u64)> {
    let response =
        crate::harness::http_get_at(door.admin_addr, "/sessions", door.admin_token.as_deref());
    let body = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{response}"))
        .1;
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    let mut own: Vec<_> = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["key_id"].as_str().unwrap_or_default().to_string(),
                s["id"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    own.sort();
    own
}

#[test]
fn sessions_are_listed_and_ended_on_every_replica_found_in_dns() {
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, "fanout-admin-token-0123456789\n").unwrap();

    // Three edges, the admin endpoint on the same port of three loopback addresses.
    let port = port_free_on_all();
    let mut doors: Vec<Door> = std::thread::scope(|s| {
        let started: Vec<_> = (1..=3)
            .map(|last| {
                let token = token.clone();
                s.spawn(move || {
                    Door::start_on(loopback(last), |raw, _| {
                        raw.listen.admin = Some(format!("127.0.0.{last}:{port}"));
                        raw.admin.bearer_token_file = Some(token);
                    })
                })
            })
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let replica = |last: u8| format!("127.0.0.{last}:{port}");
    for (door, last) in doors.iter().zip(1..) {
        assert_eq!(door.admin_addr.to_string(), replica(last));
    }

    // DNS: the deployment's name has the three addresses; SRV records name each replica.
    let dns_port = free_port();
    let _dns = crate::children::start_dnsmasq(
        tmp.path(),
        dns_port,
        &format!(
            "host-record=edges.test,127.0.0.1\nhost-record=edges.test,127.0.0.2\n\
             host-record=edges.test,127.0.0.3\n\
             host-record=edge-1.test,127.0.0.1\nhost-record=edge-2.test,127.0.0.2\n\
             host-record=edge-3.test,127.0.0.3\n\
             srv-host=_admin._tcp.edges.test,edge-1.test,{port}\n\
             srv-host=_admin._tcp.edges.test,edge-2.test,{port}\n\
             srv-host=_admin._tcp.edges.test,edge-3.test,{port}\n"
        ),
    );
    let dns = format!("127.0.0.1:{dns_port}");
    let by_a = format!("edges.test:{port}");
    let token_arg = token.to_str().unwrap();

    // One door-user session on each edge, one session of another user on edge 2.
    let other = doors[1].keygen_cert("other", &[]);
    let mut users: Vec<Child> = doors
        .iter()
        .map(|d| long_session(d, &d.user_key, false))
        .collect();
    let bystander = long_session(&doors[1], &other, false);
    for (door, n) in doors.iter().zip([1, 2, 1]) {
        wait_sessions(door, n);
    }

    // Listed through the A records: all four, each with the replica that holds it.
    let out = sessions(
        &[
            "list",
            "--replicas",
            &by_a,
            "--dns-server",
            &dns,
            "--token-file",
            token_arg,
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = json(&out);
    assert_eq!(v["unreachable"], serde_json::json!([]), "{v}");
    let all = listed(&v);
    let who: Vec<_> = all
        .iter()
        .map(|(r, k, _)| (r.clone(), k.as_str()))
        .collect();
    assert_eq!(
        who,
        [
            (replica(1), "door-user"),
            (replica(2), "door-user"),
            (replica(2), "other-id"),
            (replica(3), "door-user"),
        ],
        "{v}"
    );
    // The ids are those each edge itself gives.
    for (door, last) in doors.iter().zip(1..) {
        let mine: Vec<_> = all
            .iter()
            .filter(|(r, _, _)| *r == replica(last))
            .map(|(_, k, id)| (k.clone(), *id))
            .collect();
        assert_eq!(mine, own_sessions(door), "replica {}", replica(last));
    }
    let bystander_id = all
        .iter()
        .find(|(_, k, _)| k == "other-id")
        .map(|(_, _, id)| *id)
        .unwrap();
    for s in v["sessions"].as_array().unwrap() {
        assert_eq!(s["front"], "ssh", "{s}");
        assert_eq!(s["target"], "training-job-abc1234-0.ssh.baseten.co", "{s}");
    }

    // Through the SRV records: the same sessions on the same replicas.
    let out = sessions(
        &[
            "list",
            "--replicas",
            "srv:_admin._tcp.edges.test",
            "--dns-server",
            &dns,
            "--token-file",
            token_arg,
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(listed(&json(&out)), all);

    // The table for people, filtered by key id (token from the environment this time).
    let out = sessions(
        &[
            "list",
            "--replicas",
            &by_a,
            "--dns-server",
            &dns,
            "--key-id",
            "door-user",
        ],
        &[("SSH_EDGE_ADMIN_TOKEN_FILE", &token)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(out.stderr.is_empty(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("REPLICA") && lines[0].contains("KEY_ID/SUB"),
        "{table}"
    );
    assert_eq!(lines.len(), 4, "{table}");
    for (line, last) in lines[1..].iter().zip(1..) {
        assert!(line.starts_with(&replica(last)), "{table}");
        assert!(line.contains(" door-user "), "{table}");
    }

    // Without the token every replica refuses, and says so.
    let out = sessions(
        &["list", "--replicas", &by_a, "--dns-server", &dns, "--json"],
        &[],
    );
    assert_eq!(out.status.code(), Some(INCOMPLETE), "{}", text(&out));
    let v = json(&out);
    assert_eq!(v["unreachable"].as_array().unwrap().len(), 3, "{v}");
    assert!(
        v["unreachable"][0]["error"]
            .as_str()
            .unwrap()
            .contains("wants a bearer token"),
        "{v}"
    );

    // A kill without a selector is refused before anything is sent.
    let out = sessions(
        &[
            "kill",
            "--replicas",
            &by_a,
            "--dns-server",
            &dns,
            "--token-file",
            token_arg,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("say which sessions to end"),
        "{}",
        text(&out)
    );

    // Ended by key id on every replica: the user's three sessions, not the bystander's.
    let out = sessions(
        &[
            "kill",
            "--replicas",
            &by_a,
            "--dns-server",
            &dns,
            "--token-file",
            token_arg,
            "--key-id",
            "door-user",
            "--reason",
            "key rotated",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for last in 1..=3 {
        assert!(
            report.contains(&format!("{}: ended 1 session (id ", replica(last))),
            "{report}"
        );
    }
    assert!(
        report.contains("ended 3 sessions on 3 replicas"),
        "{report}"
    );
    for child in users.drain(..) {
        let err = ended(child);
        assert!(
            err.contains("ssh-edge: session ended by an administrator: key rotated"),
            "{err}"
        );
    }
    for (door, n) in doors.iter().zip([0, 1, 0]) {
        wait_sessions(door, n);
    }
    let mut bystander = bystander;
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "the bystander was ended"
    );

    // Edge 3 stops: the list names it unreachable and says it is incomplete.
    let stopped = doors.pop().unwrap();
    let stopped_addr = stopped.admin_addr;
    drop(stopped);
    assert!(
        std::net::TcpStream::connect_timeout(&stopped_addr, Duration::from_secs(1)).is_err(),
        "edge 3 still answers"
    );
    let out = sessions(
        &[
            "list",
            "--replicas",
            &by_a,
            "--dns-server",
            &dns,
            "--token-file",
            token_arg,
            "--json",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(INCOMPLETE), "{}", text(&out));
    let v = json(&out);
    assert_eq!(
        listed(&v),
        [(replica(2), "other-id".to_string(), bystander_id)],
        "{v}"
    );
    let unreachable = v["unreachable"].as_array().unwrap();
    assert_eq!(unreachable.len(), 1, "{v}");
    assert_eq!(unreachable[0]["replica"], replica(3).as_str());
    assert!(
        unreachable[0]["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{v}"
    );
    // In table mode, on stderr.
    let out = sessions(
        &[
            "list",
            "--replicas",
            &by_a,
            "--dns-server",
            &dns,
            "--token-file",
            token_arg,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(INCOMPLETE), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "replica {} unreachable: cannot connect",
            replica(3)
        )),
        "{err}"
    );
    assert!(err.contains("1 of 3 replicas unreachable"), "{err}");

    // One session by id, on the replica that holds it.
    let out = sessions(
        &[
            "kill",
            "--replicas",
            &by_a,
            "--dns-server",
            &dns,
            "--token-file",
            token_arg,
            "--id",
            &bystander_id.to_string(),
            "--replica",
            &replica(2),
            "--reason",
            "done",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "{}: ended 1 session (id {bystander_id})",
            replica(2)
        )),
        "{}",
        text(&out)
    );
    let err = ended(bystander);
    assert!(
        err.contains("ssh-edge: session ended by an administrator: done"),
        "{err}"
    );
    wait_sessions(&doors[1], 0);
}
