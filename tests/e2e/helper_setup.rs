//! Our own helper: `ssh-edge setup` writes a key and a managed ~/.ssh/config block; plain
//! `ssh <workload host>` then signs through the issuer (`Match … exec "ssh-edge sign %n"`) and
//! connects through front B with `ssh-edge connect --token-file`.

use std::process::Command;
use std::time::Duration;

use crate::issuer::{KEY_DEFAULT, start_issuer};
use crate::world::*;

fn setup_cmd(w: &World, port: u16, ssh_dir: &std::path::Path, api_key: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssh-edge"));
    c.args([
        "setup",
        "--api",
        &format!("http://127.0.0.1:{port}"),
        "--api-key",
        api_key,
    ])
    .args(["--edge", &format!("localhost:{}", w.tls_port), "--ca-file"])
    .arg(w.lab.path("tls-ca.pem"))
    .arg("--ssh-dir")
    .arg(ssh_dir)
    .args([
        "--training-user",
        &w.lab.login_user,
        "--model-user",
        &w.lab.login_user,
    ]);
    c
}

#[test]
fn setup_then_plain_ssh_signs_and_lands_through_front_b() {
    let w = World::start();
    let issuer = start_issuer(&w);
    let ssh_dir = w.lab.path("home-ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::write(ssh_dir.join("config"), "Host unrelated\n  User someone\n").unwrap();

    let out = setup_cmd(&w, issuer.port, &ssh_dir, KEY_DEFAULT).output_bounded();
    assert!(out.status.success(), "setup: {}", stderr(&out));
    let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    assert!(
        config.starts_with("Host unrelated\n  User someone\n"),
        "existing config kept: {config}"
    );
    assert_eq!(config.matches(">>> ssh-edge").count(), 1);
    // Idempotent: a second run leaves the file as it was.
    assert!(
        setup_cmd(&w, issuer.port, &ssh_dir, KEY_DEFAULT)
            .output_bounded()
            .status
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(ssh_dir.join("config")).unwrap(),
        config
    );

    let known = format!(
        "UserKnownHostsFile={}",
        w.lab.path("backend_known_hosts").display()
    );
    let alias = format!("HostKeyAlias=[127.0.0.1]:{}", w.lab.sshd_port);
    // The same host twice: tokens are single use, so the second ssh must not present the
    // first one's token again (`connect --spend-token` removes it, `sign` fetches another).
    for host in [HOST, "model-m1x2y3-d1.ssh.baseten.co", HOST] {
        let out = run_with_timeout(
            Command::new("ssh")
                .arg("-F")
                .arg(ssh_dir.join("config"))
                .args([
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    &known,
                    "-o",
                    &alias,
                    host,
                    "echo via-setup; id -un",
                ]),
            Duration::from_secs(60),
        );
        assert_eq!(
            stdout(&out),
            format!("via-setup\n{}\n", w.lab.login_user),
            "{host}: {}",
            stderr(&out)
        );
        let cert = ssh_dir
            .join("ssh-edge/certs")
            .join(format!("{host}-cert.pub"));
        assert!(
            std::fs::read_to_string(&cert)
                .unwrap()
                .contains("-cert-v01@openssh.com"),
            "{host}: no certificate written"
        );
    }
    assert_eq!(w.metric("ssh_edge_logins_total{front=\"token\"}"), 3);
    assert_eq!(
        w.metric("ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"replayed\"}"),
        0
    );
}

#[test]
fn sign_failures_say_what_to_do() {
    let w = World::start();
    let issuer = start_issuer(&w);
    let ssh_dir = w.lab.path("home-ssh-bad");
    std::fs::create_dir_all(&ssh_dir).unwrap();

    // Not set up yet.
    let sign = |host: &str| {
        Command::new(env!("CARGO_BIN_EXE_ssh-edge"))
            .args(["sign", "--ssh-dir"])
            .arg(&ssh_dir)
            .arg(host)
            .output_bounded()
    };
    let out = sign(HOST);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("ssh-edge setup"), "{}", stderr(&out));

    // A wrong API key: the API's refusal, with its status, is shown.
    assert!(
        setup_cmd(&w, issuer.port, &ssh_dir, "wrong-key")
            .output_bounded()
            .status
            .success()
    );
    let out = sign(HOST);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HTTP 401"), "{}", stderr(&out));

    // Someone else's job.
    assert!(
        setup_cmd(&w, issuer.port, &ssh_dir, KEY_DEFAULT)
            .output_bounded()
            .status
            .success()
    );
    let out = sign("training-job-other99-0.ssh.baseten.co");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));

    // A malformed host name never reaches the API.
    let out = sign("training-job-abc.ssh.baseten.co");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("expected training-job-<job_id>-<node>"),
        "{}",
        stderr(&out)
    );
}
