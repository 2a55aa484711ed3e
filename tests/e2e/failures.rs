//! Bad input and broken backends: malformed host names, unreachable backends, wrong backend
//! host keys, garbage and silence on the ports. Each gets a clear message or a clean close, is
//! counted, and every other session carries on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use ssh_edge::config::RawRoute;

use crate::process::{ECHO_ONE_LINE, Live};
use crate::world::*;

/// ssh with host-key checking off: a wrong host name must reach the edge's own answer.
pub(crate) fn ssh_loose(w: &World, via: Via, host: &str) -> (Option<i32>, String) {
    let out = w.ssh(
        via,
        host,
        &[
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ],
        "echo inside",
    );
    (out.status.code(), stderr(&out) + &stdout(&out))
}

#[test]
fn malformed_host_names_get_a_message_saying_what_was_expected() {
    let long_label = format!("training-job-{}-0", "a".repeat(60));
    let cases = [
        (
            "training-job-abc.ssh.baseten.co",
            "expected training-job-<job_id>-<node>",
            "malformed",
        ),
        (
            "notebook-x-0.ssh.baseten.co",
            "unknown workload kind",
            "unknown kind",
        ),
        (
            "training-job-abc1234-0.nope.ssh.baseten.co",
            "unknown remote \"nope\"",
            "unknown remote",
        ),
        (
            "training-job-abc1234-0.example.com",
            "expected a name ending in .ssh.baseten.co",
            "wrong suffix",
        ),
    ];
    let w = World::start();
    for via in [Via::Openssl, Via::PlainSsh] {
        for (host, expected, what) in cases {
            if matches!(via, Via::PlainSsh) && what == "wrong suffix" {
                continue; // a user name without the suffix is the short form, not an error
            }
            let (code, text) = ssh_loose(&w, via, host);
            assert_eq!(code, Some(255), "{what} via {via:?}: {text}");
            assert!(text.contains("invalid host"), "{what} via {via:?}: {text}");
            assert!(
                text.contains(expected),
                "{what} via {via:?}: wanted {expected:?} in {text}"
            );
            assert!(!text.contains("inside"));
        }
    }
    // A label over 63 bytes is not even a valid TLS server name (the TLS stack refuses it in
    // the handshake); on the plain-SSH front it reaches the parser and gets the message.
    let (code, text) = ssh_loose(&w, Via::PlainSsh, &format!("{long_label}.ssh.baseten.co"));
    assert_eq!(code, Some(255), "long label: {text}");
    assert!(text.contains("63"), "long label: {text}");
    // Each refusal counted once under its own reason, per listener.
    for (listener, reasons) in [
        (
            "tls",
            [
                "malformed",
                "unknown_kind",
                "unknown_remote",
                "wrong_suffix",
            ],
        ),
        (
            "ssh",
            [
                "malformed",
                "unknown_kind",
                "unknown_remote",
                "label_too_long",
            ],
        ),
    ] {
        for reason in reasons {
            w.wait_metric(
                &format!(
                    "ssh_edge_connections_rejected_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
                ),
                1,
            );
        }
    }
}

#[test]
fn tls_without_sni_is_refused_with_a_message() {
    let w = World::start();
    let proxy = format!(
        "ProxyCommand=openssl s_client -quiet -verify_quiet -noservername -connect 127.0.0.1:{} 2>/dev/null",
        w.tls_port
    );
    let out = w.ssh(Via::PlainSsh, HOST, &["-o", &proxy], "echo inside");
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(255), "{text}");
    assert!(text.contains("TLS without SNI"), "{text}");
    w.wait_metric(
        "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"no_sni\"}",
        1,
    );
}

fn down_and_badkey_routes(raw: &mut ssh_edge::config::RawConfig) {
    let sshd = raw.routes[0].backend.clone();
    let port = sshd.rsplit(':').next().unwrap().to_string();
    let extra = [
        ("down1", "127.0.0.1:1".to_string()),
        ("badkey", format!("localhost:{port}")),
    ];
    for (model, backend) in extra.into_iter().rev() {
        raw.routes.insert(
            0,
            RawRoute {
                kind: "model".into(),
                match_fields: [("model_id".to_string(), model.to_string())].into(),
                backend,
                login_user: raw.routes[0].login_user.clone(),
                principal: "{model_id}".into(),
                backend_principal: Some("m1x2y3".into()),
                ..RawRoute::default()
            },
        );
    }
}

#[test]
fn unreachable_backend_gets_a_clear_message_and_other_sessions_carry_on() {
    let w = World::start_with(down_and_badkey_routes);
    // A session on a healthy backend, open before and throughout.
    let mut running = live_session(&w, Via::Connect);
    w.wait_metric("ssh_edge_sessions_active", 1);

    let key = w.keygen_cert("modelkey", "user_ca", Some("down1,badkey"), "+10m", &[]);
    for via in [Via::Connect, Via::PlainSsh] {
        let out = w.ssh_as(
            &key,
            via,
            "model-down1-d1.ssh.baseten.co",
            &[],
            "echo inside",
        );
        let text = stderr(&out);
        assert_eq!(out.status.code(), Some(255), "{via:?}: {text}");
        assert!(
            text.contains("model-down1-d1.ssh.baseten.co"),
            "{via:?}: message must name the target: {text}"
        );
        assert!(
            text.contains("cannot connect to backend 127.0.0.1:1"),
            "{via:?}: {text}"
        );
    }
    w.wait_metric("ssh_edge_backend_failures_total{reason=\"connect\"}", 2);

    running.send_last("after-failures");
    let (status, rest, err) = running.finish(Duration::from_secs(30));
    assert_eq!(
        rest,
        ["got after-failures"],
        "the other session was disturbed: {err}"
    );
    assert!(status.success(), "{err}");
}

#[test]
fn wrong_backend_host_key_is_refused_with_a_clear_message() {
    let w = World::start_with(down_and_badkey_routes);
    // Record a different key for [localhost]:port, as if the backend had been replaced.
    let known = w.lab.path("backend_known_hosts");
    let mut text = std::fs::read_to_string(&known).unwrap();
    let impostor = ssh_edge::upstream::random_ed25519_key()
        .public_key()
        .to_openssh()
        .unwrap();
    text.push_str(&format!("[localhost]:{} {impostor}\n", w.lab.sshd_port));
    std::fs::write(&known, text).unwrap();

    let key = w.keygen_cert("modelkey", "user_ca", Some("down1,badkey"), "+10m", &[]);
    let out = w.ssh_as(
        &key,
        Via::Connect,
        "model-badkey-d1.ssh.baseten.co",
        &[],
        "echo inside",
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(255), "{text}");
    assert!(text.contains("host key rejected"), "{text}");
    assert!(text.contains("differs from the one recorded"), "{text}");
    w.wait_metric("ssh_edge_backend_failures_total{reason=\"host_key\"}", 1);
    // Healthy targets still work.
    let out = w.ssh(Via::PlainSsh, HOST, &[], "echo fine");
    assert_eq!(stdout(&out).trim(), "fine", "{}", stderr(&out));
}

/// `ssh … ECHO_ONE_LINE` via `via`, left running: it shows a session open across an event.
fn live_session(w: &World, via: Via) -> Live {
    let mut args = w.ssh_args(via, HOST);
    args.push(ECHO_ONE_LINE.into());
    let mut live = Live::spawn(Command::new("ssh").args(&args));
    live.expect_line("ready", Duration::from_secs(60));
    live
}

/// Reads until the peer closes, failing if it has not within 20 s; what was received.
fn read_until_closed(s: &mut TcpStream, what: &str) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            // A reset after the edge closed with our garbage unread is a close too.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return all,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{what}: the edge did not close the connection: {e}"),
        }
    }
}

#[test]
fn garbage_and_silence_on_the_ports_are_dropped_and_counted() {
    let w = World::start_with(|raw| {
        raw.tls.handshake_timeout_secs = 1;
        raw.ssh.login_grace_secs = 2;
    });
    let series = |listener: &str, reason: &str| {
        format!(
            "ssh_edge_connections_rejected_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        )
    };
    // Counted before the close the client saw: there already.
    let rejected = |listener: &str, reason: &str, n: u64| {
        assert_eq!(
            w.metric(&series(listener, reason)),
            n,
            "{reason} on {listener}"
        );
    };
    // russh closes an SSH connection it gave up on before the edge hears of it: awaited.
    let rejected_after_close =
        |listener: &str, reason: &str, n: u64| w.wait_metric(&series(listener, reason), n);
    // A real user's session, open throughout.
    let mut running = live_session(&w, Via::PlainSsh);
    w.wait_metric("ssh_edge_sessions_active", 1);

    // Garbage instead of TLS: a TLS alert at most, then the close.
    let mut s = TcpStream::connect(("127.0.0.1", w.tls_port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let got = read_until_closed(&mut s, "garbage on the TLS port");
    assert!(
        got.is_empty() || got[0] == 0x15,
        "the edge answered HTTP garbage with something other than a TLS alert: {got:02x?}"
    );
    rejected("tls", "tls_handshake", 1);

    // Garbage instead of SSH: the edge's identification line, then the close.
    let mut s = TcpStream::connect(("127.0.0.1", w.ssh_port)).unwrap();
    s.write_all(&[0xde, 0xad, 0xbe, 0xef, b'\n'].repeat(100))
        .unwrap();
    let got = read_until_closed(&mut s, "garbage on the SSH port");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("SSH-2.0-"),
        "the edge did not identify itself: {text:?}"
    );
    let first_line_end = got
        .iter()
        .position(|&b| b == b'\n')
        .map_or(got.len(), |i| i + 1);
    assert!(
        got.len() - first_line_end < 2048,
        "the edge answered garbage with a stream of data: {text:?}"
    );
    rejected_after_close("ssh", "ssh_handshake", 1);

    // Silent clients on both ports are cut off by the configured time limits.
    for port in [w.tls_port, w.ssh_port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        read_until_closed(&mut s, &format!("silence on port {port}"));
    }
    rejected("tls", "tls_timeout", 1);
    rejected("ssh", "grace", 1);

    // The session open throughout still moves data, and new users are served.
    running.send_last("after-garbage");
    let (status, rest, err) = running.finish(Duration::from_secs(30));
    assert_eq!(rest, ["got after-garbage"], "{err}");
    assert!(status.success(), "{err}");
    let out = w.ssh(Via::Connect, HOST, &[], "echo served");
    assert_eq!(stdout(&out).trim(), "served", "{}", stderr(&out));
}

#[test]
fn a_silent_backend_times_out_with_a_message_naming_the_target() {
    // Accepts TCP (the kernel completes the handshake) but never speaks SSH.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let w = World::start_with(|raw| {
        raw.backend.connect_timeout_secs = 1;
        let login_user = raw.routes[0].login_user.clone();
        raw.routes.insert(
            0,
            RawRoute {
                kind: "model".into(),
                match_fields: [("model_id".to_string(), "silent".to_string())].into(),
                backend: format!("127.0.0.1:{port}"),
                login_user,
                principal: "{model_id}".into(),
                ..RawRoute::default()
            },
        );
    });
    let key = w.keygen_cert("silentkey", "user_ca", Some("silent"), "+10m", &[]);
    let out = w.ssh_as(
        &key,
        Via::PlainSsh,
        "model-silent-d1.ssh.baseten.co",
        &[],
        "echo inside",
    );
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(255), "{text}");
    assert!(text.contains("model-silent-d1.ssh.baseten.co"), "{text}");
    assert!(text.contains("did not answer within 1s"), "{text}");
    w.wait_metric("ssh_edge_backend_failures_total{reason=\"timeout\"}", 1);
    drop(silent);
}
