//! Our own helper: `ssh-edge setup` writes a key and a managed ~/.ssh/config block; plain
//! `ssh <workload host>` then keeps its certificate fresh through the issuer (`Match … exec
//! "ssh-edge sign %n"`) and connects through front B with `ssh-edge connect --sign`, which
//! fetches a token for that one connection.

use std::process::Command;
use std::time::Duration;

use crate::issuer::{KEY_DEFAULT, start_issuer};
use crate::process::{ECHO_ONE_LINE, Live};
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

const REPLAYED: &str = "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"replayed\"}";

/// Plain `ssh host command` through the managed block in `ssh_dir/config`.
fn managed_ssh(w: &World, ssh_dir: &std::path::Path, host: &str, command: &str) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F").arg(ssh_dir.join("config")).args([
        "-o",
        "BatchMode=yes",
        "-o",
        &format!(
            "UserKnownHostsFile={}",
            w.lab.path("backend_known_hosts").display()
        ),
        "-o",
        &format!("HostKeyAlias=[127.0.0.1]:{}", w.lab.sshd_port),
        host,
        command,
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

    // The same host twice: tokens are single use, so each ssh's `connect --sign` fetches its own.
    for host in [HOST, "model-m1x2y3-d1.ssh.baseten.co", HOST] {
        let out = run_with_timeout(
            &mut managed_ssh(&w, &ssh_dir, host, "echo via-setup; id -un"),
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
    // The series exists from the start (at 0): still 0 means none replayed.
    assert_eq!(w.metric(REPLAYED), 0, "a token was refused as replayed");
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

/// Several `ssh` to one host started at once (as Remote-SSH does) each present a token of
/// their own: all are open together, none is refused as replayed, and no token is stored.
#[test]
fn concurrent_ssh_to_one_host_each_use_their_own_token() {
    const AT_ONCE: usize = 4;
    let w = World::start();
    let issuer = start_issuer(&w);
    let ssh_dir = w.lab.path("home-ssh-concurrent");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let out = setup_cmd(&w, issuer.port, &ssh_dir, KEY_DEFAULT).output_bounded();
    assert!(out.status.success(), "setup: {}", stderr(&out));

    // Started together with no certificate cached yet: the `sign` runs race too.
    let mut sessions: Vec<Live> = (0..AT_ONCE)
        .map(|_| Live::spawn(&mut managed_ssh(&w, &ssh_dir, HOST, ECHO_ONE_LINE)))
        .collect();
    for live in &mut sessions {
        live.expect_line("ready", Duration::from_secs(60));
    }
    // Every session is open now, each through its own front-B login.
    assert_eq!(
        w.metric("ssh_edge_logins_total{front=\"token\"}"),
        AT_ONCE as u64
    );
    for (i, mut live) in sessions.into_iter().enumerate() {
        live.send_last(&format!("s{i}"));
        let (status, rest, err) = live.finish(Duration::from_secs(60));
        assert!(status.success(), "session {i}: {err}");
        assert_eq!(rest, [format!("got s{i}")], "session {i}");
    }

    // And one after the other, with the certificate now cached.
    let out = run_with_timeout(
        &mut managed_ssh(&w, &ssh_dir, HOST, "echo again"),
        Duration::from_secs(60),
    );
    assert_eq!(stdout(&out), "again\n", "{}", stderr(&out));
    assert_eq!(
        w.metric("ssh_edge_logins_total{front=\"token\"}"),
        AT_ONCE as u64 + 1
    );
    // The series exists from the start (at 0): still 0 means none replayed.
    assert_eq!(w.metric(REPLAYED), 0, "a token was refused as replayed");
    let state: Vec<String> = std::fs::read_dir(ssh_dir.join("ssh-edge"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!state.iter().any(|f| f.contains("token")), "{state:?}");
    let certs: Vec<String> = std::fs::read_dir(ssh_dir.join("ssh-edge/certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        certs,
        [format!("{HOST}-cert.pub")],
        "no temporary file left"
    );
}

/// `connect --sign` with the signing API down: nothing on stdout (ssh's stream), and stderr
/// names the URL it could not reach.
#[test]
fn connect_sign_names_an_unreachable_api() {
    let w = World::start();
    let ssh_dir = w.lab.path("home-ssh-down");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = setup_cmd(&w, port, &ssh_dir, KEY_DEFAULT).output_bounded();
    assert!(out.status.success(), "setup: {}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_ssh-edge"))
        .args(["connect", "--sign", "--ssh-dir"])
        .arg(&ssh_dir)
        .arg(HOST)
        .output_bounded();
    assert_eq!(out.status.code(), Some(255));
    assert!(out.stdout.is_empty(), "stdout is the SSH stream");
    let err = stderr(&out);
    assert!(
        err.starts_with("ssh-edge connect: cannot reach the signing API at ")
            && err.contains(&format!("http://127.0.0.1:{port}/v1/training_jobs/search")),
        "{err}"
    );
    assert_eq!(
        w.metric("ssh_edge_connections_total{listener=\"tls\"}"),
        0,
        "no edge connection without a token"
    );
}
