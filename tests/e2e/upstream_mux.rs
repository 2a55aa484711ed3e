//! Upstream multiplexing (`backend.multiplex`): user connections holding the same certificate
//! share one backend SSH connection, as the backend's own sshd log shows; another certificate
//! gets its own; and `ssh -R` listeners on a shared connection reach their own user and end
//! with that user's connection, not with the backend connection.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::world::*;

/// Backend logins the real sshd accepted so far (one per backend SSH connection).
fn sshd_logins(w: &World) -> usize {
    std::fs::read_to_string(w.lab.path("sshd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Accepted publickey") && l.contains("ssh-edge user_key_id="))
        .count()
}

fn logins(w: &World, upstream: &str) -> u64 {
    w.metric(&format!(
        "ssh_edge_backend_logins_total{{upstream=\"{upstream}\"}}"
    ))
}

fn echo(w: &World, key: &std::path::Path, word: &str) {
    let out = w.ssh_as(key, Via::PlainSsh, HOST, &[], &format!("echo {word}"));
    assert_eq!(stdout(&out).trim(), word, "{}", stderr(&out));
}

#[test]
fn logins_with_the_same_certificate_share_one_backend_connection() {
    let w = World::start_with(|raw| raw.backend.multiplex = true);
    for i in 0..3 {
        echo(&w, &w.user_key, &format!("shared-{i}"));
    }
    assert_eq!(logins(&w, "new"), 1, "{}", w.metrics.render());
    assert_eq!(logins(&w, "shared"), 2);
    assert_eq!(sshd_logins(&w), 1, "the backend saw more than one login");

    // Another certificate (another person, same job) never rides on that login.
    let other = w.keygen_cert("colleague", "user_ca", Some(JOB), "+10m", &[]);
    echo(&w, &other, "own-login");
    assert_eq!(logins(&w, "new"), 2);
    assert_eq!(sshd_logins(&w), 2);
}

#[test]
fn without_multiplexing_every_login_gets_its_own_backend_connection() {
    let w = World::start();
    for i in 0..2 {
        echo(&w, &w.user_key, &format!("own-{i}"));
    }
    assert_eq!(logins(&w, "new"), 2);
    assert_eq!(logins(&w, "shared"), 0);
    assert_eq!(sshd_logins(&w), 2);
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client-side HTTP server whose one file says `word`.
fn serve(w: &World, word: &str) -> (Killed, u16) {
    let root = w.lab.path(&format!("www-{word}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("who"), word).unwrap();
    let port = ssh_edge::lab::free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .arg("--directory")
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(ssh_edge::lab::wait_for_port(port, Duration::from_secs(10)));
    (Killed(child), port)
}

/// `ssh -N -R backend_port:127.0.0.1:local_port`, once the backend listens.
fn remote_forward(w: &World, backend_port: u16, local_port: u16) -> Killed {
    let mut args = w.ssh_args(Via::PlainSsh, HOST);
    let dest = args.pop().unwrap();
    args.extend([
        "-N".to_string(),
        "-o".into(),
        "ExitOnForwardFailure=yes".into(),
        "-R".into(),
        format!("127.0.0.1:{backend_port}:127.0.0.1:{local_port}"),
        dest,
    ]);
    let child = Command::new("ssh")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        ssh_edge::lab::wait_for_port(backend_port, Duration::from_secs(30)),
        "-R {backend_port} never listened"
    );
    Killed(child)
}

fn fetch_inside(w: &World, port: u16) -> String {
    let cmd = format!("curl -sS --max-time 10 http://127.0.0.1:{port}/who");
    let out = w.ssh(Via::PlainSsh, HOST, &[], &cmd);
    stdout(&out)
}

#[test]
fn remote_forwards_on_a_shared_connection_reach_their_own_user_and_end_with_it() {
    let w = World::start_with(|raw| raw.backend.multiplex = true);
    let (_alice_http, alice_local) = serve(&w, "alice");
    let (_bob_http, bob_local) = serve(&w, "bob");
    let (alice_port, bob_port) = (ssh_edge::lab::free_port(), ssh_edge::lab::free_port());
    let alice = remote_forward(&w, alice_port, alice_local);
    let _bob = remote_forward(&w, bob_port, bob_local);
    assert_eq!(logins(&w, "new"), 1, "the two -R users did not share");

    assert_eq!(fetch_inside(&w, alice_port), "alice");
    assert_eq!(fetch_inside(&w, bob_port), "bob");

    // Alice leaves; the shared backend connection lives on, but her listener must not.
    drop(alice);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && TcpStream::connect(("127.0.0.1", alice_port)).is_ok() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        TcpStream::connect(("127.0.0.1", alice_port)).is_err(),
        "the backend still listens for a user who left"
    );
    assert_eq!(fetch_inside(&w, bob_port), "bob");
    assert_eq!(sshd_logins(&w), 1);
}
