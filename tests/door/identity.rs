//! The edge's own identity as clients see it: its SSH host certificate, accepted by an
//! OpenSSH client that trusts only the host CA (`@cert-authority` in known_hosts) on both
//! fronts, refused by one trusting another CA; and its TLS certificate replaced on SIGHUP,
//! new connections seeing the new one while an open session carries on.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Door, run_with_timeout, text};
use crate::process::{Bounded, ECHO_ONE_LINE, Live};

const HOST: &str = "training-job-abc1234-0.ssh.baseten.co";

fn run(cmd: &mut Command) -> String {
    let out = cmd.output_bounded();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh ed25519 CA `name` in `dir`; its public line.
fn new_ca(dir: &Path, name: &str) -> String {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join(name)));
    std::fs::read_to_string(dir.join(format!("{name}.pub")))
        .unwrap()
        .trim()
        .to_string()
}

/// A known_hosts file trusting only `ca` for every host.
fn trusting(dir: &Path, name: &str, ca: &str) -> String {
    let file = dir.join(name);
    std::fs::write(&file, format!("@cert-authority * {ca}\n")).unwrap();
    format!("UserKnownHostsFile={}", file.display())
}

#[test]
fn clients_trusting_the_host_ca_accept_the_edges_host_certificate() {
    let door = Door::start(|raw, lab| {
        // The edge's host key, certified by a host CA for both fronts' names.
        let dir = lab.path("");
        new_ca(&dir, "edge_host_ca");
        let public = run(Command::new("ssh-keygen")
            .args(["-y", "-f"])
            .arg(lab.path("edge_host_ed25519")));
        std::fs::write(lab.path("edge_host_ed25519.pub"), public).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(lab.path("edge_host_ca"))
            .args(["-I", "edge-host", "-h", "-z", "77", "-n"])
            .arg(format!("127.0.0.1,{HOST}"))
            .arg(lab.path("edge_host_ed25519.pub")));
        raw.ssh.host_certificate_files = vec![lab.path("edge_host_ed25519-cert.pub")];
    });
    let dir = door.lab.path("");
    let ca = std::fs::read_to_string(dir.join("edge_host_ca.pub")).unwrap();
    let good = trusting(&dir, "ca_known_hosts", ca.trim());
    let checks = ["-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=DEBUG1"];

    // Front C (host 127.0.0.1) and front A (the workload's name through `ssh-edge connect`).
    let front_a = |known: &str| {
        let key = door.user_key.display().to_string();
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(&door.ssh_config)
            .args(["-o", "BatchMode=yes", "-i", &key, "-o"])
            .arg(format!("CertificateFile={key}-cert.pub"))
            .args(["-o", known])
            .args(checks)
            .args([HOST, "echo inside"]);
        run_with_timeout(&mut cmd, Duration::from_secs(60))
    };
    let mut extra = vec!["-o", &good];
    extra.extend(checks);
    for (front, out) in [
        ("C", door.ssh(&door.user_key, &extra, "echo inside")),
        ("A", front_a(&good)),
    ] {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "inside\n",
            "front {front}: {}",
            text(&out)
        );
        assert!(
            stderr.contains("Server host certificate: ssh-ed25519-cert-v01@openssh.com")
                && stderr.contains("serial 77 ID \"edge-host\""),
            "front {front}: the edge did not present its certificate: {stderr}"
        );
        assert!(
            stderr.contains("matches the ED25519-CERT host certificate"),
            "front {front}: {stderr}"
        );
    }

    // A client trusting another host CA refuses the edge.
    let other = new_ca(&dir, "other_host_ca");
    let bad = trusting(&dir, "other_known_hosts", &other);
    let mut extra = vec!["-o", &bad];
    extra.extend(checks);
    for (front, out) in [
        ("C", door.ssh(&door.user_key, &extra, "echo inside")),
        ("A", front_a(&bad)),
    ] {
        assert_eq!(
            out.status.code(),
            Some(255),
            "front {front}: {}",
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Host key verification failed"),
            "front {front}: {}",
            text(&out)
        );
    }
}

/// SHA-256 fingerprint of the certificate the TLS front presents for `HOST`.
fn served_fingerprint(door: &Door) -> String {
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{} -servername {HOST} </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256",
        door.tls
    );
    run(Command::new("sh").args(["-c", &script]))
        .trim()
        .to_string()
}

fn file_fingerprint(cert: &Path) -> String {
    run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert))
    .trim()
    .to_string()
}

#[test]
fn sighup_rotates_the_tls_certificate_and_open_sessions_carry_on() {
    // Only the signal reloads here, not the file watch.
    let door = Door::start(|raw, _| raw.reload.watch = false);
    let cert = door.lab.path("tls-cert.pem");
    let first = file_fingerprint(&cert);
    assert!(first.contains("Fingerprint="), "{first}");
    assert_eq!(served_fingerprint(&door), first);

    // A session through the TLS front, open before the rotation.
    let key = door.user_key.display().to_string();
    let mut live = Live::spawn(
        Command::new("ssh")
            .arg("-F")
            .arg(&door.ssh_config)
            .args(["-o", "BatchMode=yes", "-i", &key, "-o"])
            .arg(format!("CertificateFile={key}-cert.pub"))
            .args([HOST, ECHO_ONE_LINE]),
    );
    live.expect_line("ready", Duration::from_secs(60));
    door.wait_metric("ssh_edge_sessions_active", Duration::from_secs(20), |v| {
        v == 1
    });

    // A new certificate and key (another key pair, self-signed) replace the files.
    let dir = door.lab.path("");
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=rotated", "-addext"])
        .arg("subjectAltName=DNS:*.ssh.baseten.co")
        .arg("-keyout")
        .arg(dir.join("rotated-key.pem"))
        .arg("-out")
        .arg(dir.join("rotated-cert.pem")));
    std::fs::copy(dir.join("rotated-key.pem"), door.lab.path("tls-key.pem")).unwrap();
    std::fs::copy(dir.join("rotated-cert.pem"), &cert).unwrap();
    let second = file_fingerprint(&cert);
    assert_ne!(first, second);
    // Not yet: nothing reloads without the signal.
    assert_eq!(served_fingerprint(&door), first);

    door.signal("-HUP");
    door.wait_metric(
        "ssh_edge_config_reloads_total{outcome=\"ok\"}",
        Duration::from_secs(20),
        |v| v == 1,
    );
    assert_eq!(served_fingerprint(&door), second);

    // The session opened under the old certificate still moves data.
    live.send_last("after-rotation");
    let (status, rest, err) = live.finish(Duration::from_secs(30));
    assert_eq!(rest, ["got after-rotation"], "{err}");
    assert!(status.success(), "{err}");
}
