//! Bad input and broken backends: malformed host names, unreachable backends, wrong backend
//! host keys, garbage and silence on the ports. Each gets a clear message or a clean close, is
//! counted, and every other session carries on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use ssh_edge::config::RawRoute;

use crate::world::*;

/// ssh with host-key checking off: a wrong host name must reach the edge's own answer.
fn ssh_loose(w: &World, via: Via, host: &str) -> (Option<i32>, String) {
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
    let counted = |front: &str| -> u64 {
        [
            "unknown_kind",
            "malformed",
            "unknown_remote",
            "wrong_suffix",
            "label_too_long",
        ]
        .iter()
        .map(|r| {
            w.metric(&format!(
                "ssh_edge_connections_rejected_total{{listener=\"{front}\",reason=\"{r}\"}}"
            ))
        })
        .sum()
    };
    assert!(
        counted("tls") >= 4,
        "TLS host-name rejections not counted:\n{}",
        w.metrics.render()
    );
    assert!(
        counted("ssh") >= 4,
        "SSH host-name rejections not counted:\n{}",
        w.metrics.render()
    );
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
    assert!(
        w.metric("ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"no_sni\"}") >= 1
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
    // A long-running session on a healthy backend, started first.
    let mut args = w.ssh_args(Via::Connect, HOST);
    args.push("sleep 2; echo still-alive".into());
    let running = Command::new("ssh")
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

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
    assert!(w.metric("ssh_edge_backend_failures_total{reason=\"connect\"}") >= 2);

    let out = running.wait_with_output().unwrap();
    assert_eq!(
        stdout(&out).trim(),
        "still-alive",
        "the other session was disturbed: {}",
        stderr(&out)
    );
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
    assert!(w.metric("ssh_edge_backend_failures_total{reason=\"host_key\"}") >= 1);
    // Healthy targets still work.
    let out = w.ssh(Via::PlainSsh, HOST, &[], "echo fine");
    assert_eq!(stdout(&out).trim(), "fine", "{}", stderr(&out));
}

#[test]
fn garbage_and_silence_on_the_ports_are_dropped_and_counted() {
    let w = World::start_with(|raw| {
        raw.tls.handshake_timeout_secs = 1;
        raw.ssh.login_grace_secs = 2;
    });
    // Garbage instead of TLS.
    let mut s = TcpStream::connect(("127.0.0.1", w.tls_port)).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(n < 256, "edge answered garbage with a stream of data");
    // Garbage instead of SSH: the edge closes the connection.
    let mut s = TcpStream::connect(("127.0.0.1", w.ssh_port)).unwrap();
    s.write_all(&[0xde, 0xad, 0xbe, 0xef, b'\n'].repeat(100))
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    // Silent clients on both ports are cut off by the configured time limits.
    for port in [w.tls_port, w.ssh_port] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut sink = Vec::new();
        let result = s.read_to_end(&mut sink);
        assert!(
            result.is_ok(),
            "port {port}: the edge did not close a silent connection: {result:?}"
        );
    }
    assert!(
        w.metric("ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"tls_handshake\"}")
            >= 1,
        "{}",
        w.metrics.render()
    );
    assert!(
        w.metric("ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"tls_timeout\"}")
            >= 1,
        "{}",
        w.metrics.render()
    );
    // And real users are served throughout.
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
    assert!(w.metric("ssh_edge_backend_failures_total{reason=\"timeout\"}") >= 1);
    drop(silent);
}
