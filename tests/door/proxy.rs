//! PROXY protocol behind a real HAProxy (TCP mode, `send-proxy` and `send-proxy-v2`): the
//! client's address, not the balancer's, is what the edge logs and what a certificate's
//! `source-address` is checked against; headers from untrusted peers and missing headers are
//! refused.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ssh_edge::lab::{free_port, wait_for_port};

use crate::harness::{Door, text};
use crate::limits::connect_from;

/// HAProxy in TCP mode: one frontend per PROXY version, both to the edge's SSH port.
struct Haproxy {
    child: Child,
    v1: u16,
    v2: u16,
    /// To the TLS listener, with `send-proxy-v2`.
    tls: u16,
}

impl Haproxy {
    fn start(door: &Door) -> Haproxy {
        let (v1, v2, tls) = (free_port(), free_port(), free_port());
        let config = format!(
            "global\n  maxconn 200\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend v1\n  bind 127.0.0.1:{v1}\n  default_backend edge_v1\n\
             backend edge_v1\n  server edge 127.0.0.1:{ssh} send-proxy\n\
             frontend v2\n  bind 127.0.0.1:{v2}\n  default_backend edge_v2\n\
             backend edge_v2\n  server edge 127.0.0.1:{ssh} send-proxy-v2\n\
             frontend tls\n  bind 127.0.0.1:{tls}\n  default_backend edge_tls\n\
             backend edge_tls\n  server edge 127.0.0.1:{edge_tls} send-proxy-v2\n",
            ssh = door.ssh,
            edge_tls = door.tls,
        );
        let path = door.lab.path("haproxy.cfg");
        std::fs::write(&path, config).unwrap();
        let exe = ["/usr/sbin/haproxy", "haproxy"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("haproxy");
        let child = Command::new(exe)
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy runs (.ci/run installs it)");
        assert!(
            wait_for_port(v1, Duration::from_secs(20)),
            "haproxy did not start"
        );
        assert!(
            wait_for_port(v2, Duration::from_secs(20)),
            "haproxy did not start"
        );
        assert!(
            wait_for_port(tls, Duration::from_secs(20)),
            "haproxy did not start"
        );
        Haproxy { child, v1, v2, tls }
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn behind_haproxy() -> Door {
    Door::start(|raw, _| {
        raw.listen.proxy_protocol = "any".into();
        // Only HAProxy (connecting from 127.0.0.1) may speak PROXY protocol.
        raw.listen.proxy_trusted_cidrs = vec!["127.0.0.1/32".into()];
    })
}

#[test]
fn behind_haproxy_the_client_address_is_the_one_in_the_header() {
    let door = behind_haproxy();
    let haproxy = Haproxy::start(&door);
    // The ssh config pins the edge's key for its own port; HAProxy's ports are other names.
    let alias = format!("HostKeyAlias=[127.0.0.1]:{}", door.ssh);
    for (version, port) in [("v1", haproxy.v1), ("v2", haproxy.v2)] {
        let port = port.to_string();
        let out = door.ssh(
            &door.user_key,
            &["-b", "127.0.0.2", "-p", &port, "-o", &alias],
            "echo landed",
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "landed\n",
            "{version}: {}",
            text(&out)
        );
        assert!(
            door.metric(&format!(
                "ssh_edge_proxy_headers_total{{version=\"{version}\"}}"
            )) >= 1
        );
    }
    let log = door.log();
    let authorized: Vec<_> = log
        .lines()
        .filter(|l| l.contains("session authorized"))
        .collect();
    assert_eq!(authorized.len(), 2, "{log}");
    for line in authorized {
        assert!(
            line.contains("client=127.0.0.2:"),
            "not the client's address: {line}"
        );
    }

    // A certificate bound to 127.0.0.2 lands from there, through HAProxy...
    let bound = door.keygen_cert("bound", &["-O", "source-address=127.0.0.2/32"]);
    let v2 = haproxy.v2.to_string();
    let out = door.ssh(
        &bound,
        &["-b", "127.0.0.2", "-p", &v2, "-o", &alias],
        "echo bound",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "bound\n",
        "{}",
        text(&out)
    );
    // ...and is refused from 127.0.0.3, though HAProxy's own address never changed.
    let out = door.ssh(
        &bound,
        &["-b", "127.0.0.3", "-p", &v2, "-o", &alias],
        "echo bound",
    );
    assert_ne!(out.status.code(), Some(0), "{}\n{}", text(&out), door.log());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out)
    );
    assert_eq!(
        door.metric("ssh_edge_auth_failures_total{reason=\"source_address\"}"),
        1
    );
}

#[test]
fn the_tls_listener_takes_proxy_headers_too() {
    let door = behind_haproxy();
    let haproxy = Haproxy::start(&door);
    let before = door.metric("ssh_edge_proxy_headers_total{version=\"v2\"}");
    // Front A through HAProxy: `ssh-edge connect` to HAProxy's TLS frontend, SNI = the job.
    let proxy_command = format!(
        "ProxyCommand={} connect --edge 127.0.0.1:{} --ca-file {} %h",
        env!("CARGO_BIN_EXE_ssh-edge"),
        haproxy.tls,
        door.lab.path("tls-ca.pem").display()
    );
    let key = door.user_key.display().to_string();
    let out = crate::harness::run_with_timeout(
        std::process::Command::new("ssh")
            .arg("-F")
            .arg(&door.ssh_config)
            .args(["-o", "BatchMode=yes", "-o", &proxy_command, "-i", &key])
            .arg("-o")
            .arg(format!("CertificateFile={key}-cert.pub"))
            .args(["training-job-abc1234-0.ssh.baseten.co", "echo landed"]),
        Duration::from_secs(60),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "landed\n",
        "{}",
        text(&out)
    );
    // (HAProxy's start-up probes may add theirs too.)
    assert!(door.metric("ssh_edge_proxy_headers_total{version=\"v2\"}") > before);
    assert!(door.metric("ssh_edge_logins_total{front=\"tls\"}") == 1);
    // A TLS client straight to the edge, without a header, is refused before TLS.
    let mut s = connect_from("127.0.0.1", door.tls).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(b"\x16\x03\x01\x00\x05hello");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "the edge answered a headerless TLS client");
    // Counted before the close the client saw (HAProxy's probes may have added theirs).
    assert!(
        door.metric(
            "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"proxy_missing\"}"
        ) >= 1
    );
}

/// Sends `bytes` from `source` straight to the edge (no HAProxy); returns what the edge says
/// up to its first line end or its close.
fn direct(door: &Door, source: &str, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect_from(source, door.ssh).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\n") && matches!(s.read(&mut byte), Ok(1)) {
        got.push(byte[0]);
    }
    got
}

#[test]
fn headers_from_untrusted_peers_and_missing_headers_are_refused() {
    let door = behind_haproxy();
    // 127.0.0.3 is not a trusted balancer: its header is not believed; it is refused.
    let got = direct(
        &door,
        "127.0.0.3",
        b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 22\r\nSSH-2.0-x\r\n",
    );
    assert!(
        !got.starts_with(b"SSH-"),
        "an untrusted peer got an SSH banner"
    );
    // Each refusal is counted before the close the client saw: there already, exactly.
    assert_eq!(
        door.metric(
            "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"proxy_untrusted\"}"
        ),
        1
    );
    // The trusted balancer's address without a header: refused as missing. (The harness's
    // start-up probe, a bare connect from 127.0.0.1, already counted as one.)
    let missing = "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"proxy_missing\"}";
    let before = door.metric(missing);
    let got = direct(&door, "127.0.0.1", b"SSH-2.0-OpenSSH_9.2\r\n");
    assert!(
        !got.starts_with(b"SSH-"),
        "a headerless connection got an SSH banner"
    );
    assert_eq!(door.metric(missing), before + 1);
    // A garbled header from the trusted address: malformed.
    let _ = direct(
        &door,
        "127.0.0.1",
        b"PROXY TCP4 1.2.3.999 127.0.0.1 1 2\r\n",
    );
    assert_eq!(
        door.metric(
            "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"proxy_malformed\"}"
        ),
        1
    );
    // A real ssh straight to the edge cannot get in either.
    let out = door.ssh(&door.user_key, &[], "echo in");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    // And a good header from the trusted address still works (the edge is not wedged).
    let got = direct(
        &door,
        "127.0.0.1",
        b"PROXY TCP4 198.51.100.7 127.0.0.1 4000 22\r\nSSH-2.0-x\r\n",
    );
    assert!(
        got.starts_with(b"SSH-2.0-ssh-edge"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}
