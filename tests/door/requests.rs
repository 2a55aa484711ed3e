//! What a session may ask for, with the real `ssh` client: a pty only with `permit-pty` in the
//! certificate, no X11 forwarding, environment variables passed on for the backend to accept
//! or drop (its `AcceptEnv`), and a client offering too many keys cut off after
//! `ssh.max_auth_attempts` with a clear message.

use std::process::Command;
use std::time::Duration;

use crate::harness::{Door, run_with_timeout, text};
use crate::process::Bounded;

fn out_text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_pty_needs_permit_pty_in_the_certificate() {
    let door = Door::start(|_, _| {});
    // The lab's certificate has permit-pty: `ssh -tt` gets a terminal.
    let out = door.ssh(&door.user_key, &["-tt", "-o", "LogLevel=INFO"], "tty");
    let (stdout, stderr) = out_text(&out);
    assert!(stdout.starts_with("/dev/pts/"), "{}", text(&out));
    assert!(
        !stderr.contains("PTY allocation request failed"),
        "{stderr}"
    );

    // Without it: the pty is refused (for a terminal asked for explicitly, OpenSSH then
    // closes the session rather than run the command without one), and the edge's log says
    // why.
    let key = door.keygen_cert("nopty", &["-O", "no-pty"]);
    let out = door.ssh(&key, &["-tt", "-o", "LogLevel=INFO"], "echo ran");
    let (stdout, stderr) = out_text(&out);
    assert!(
        stderr.contains("PTY allocation request failed on channel 0"),
        "{}",
        text(&out)
    );
    assert_eq!(out.status.code(), Some(255), "{}", text(&out));
    assert!(!stdout.contains("ran"), "{}", text(&out));
    let log = door.log();
    let line = log
        .lines()
        .find(|l| l.contains("pty refused: certificate lacks permit-pty"))
        .unwrap_or_else(|| panic!("no pty refusal in the log:\n{log}"));
    assert!(line.contains("client=127.0.0.1:"), "{line}");
}

#[test]
fn x11_forwarding_is_refused_and_logged() {
    let door = Door::start(|_, _| {});
    let mut cmd = door.ssh_command(
        &door.user_key,
        &["-X", "-o", "LogLevel=INFO"],
        "echo display=${DISPLAY:-none}",
    );
    // The client asks for X11 only with a DISPLAY; without xauth it sends a fake cookie.
    cmd.env("DISPLAY", "127.0.0.1:99");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let (stdout, stderr) = out_text(&out);
    assert_eq!(stdout, "display=none\n", "{}", text(&out));
    assert!(
        stderr.contains("X11 forwarding request failed on channel 0"),
        "{}",
        text(&out)
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = door.log();
    let line = log
        .lines()
        .find(|l| l.contains("X11 forwarding refused"))
        .unwrap_or_else(|| panic!("no X11 refusal in the log:\n{log}"));
    assert!(line.contains("client=127.0.0.1:"), "{line}");
}

#[test]
fn environment_variables_reach_the_backend_which_applies_its_accept_env() {
    let door = Door::start(|_, _| {});
    // The lab's sshd accepts LANG, LC_* and EDGE_TEST_*: SetEnv and SendEnv ones pass, others
    // are dropped by the backend, not by the edge.
    let mut cmd = door.ssh_command(
        &door.user_key,
        &[
            "-o",
            "SetEnv=EDGE_TEST_SET=from-setenv OTHER_SET=dropped",
            "-o",
            "SendEnv=EDGE_TEST_SENT OTHER_SENT",
        ],
        "echo \"$EDGE_TEST_SET/$EDGE_TEST_SENT/${OTHER_SET:-unset}/${OTHER_SENT:-unset}\"",
    );
    cmd.env("EDGE_TEST_SENT", "from-sendenv")
        .env("OTHER_SENT", "dropped");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "from-setenv/from-sendenv/unset/unset\n",
        "{}",
        text(&out)
    );
}

#[test]
fn a_client_offering_too_many_keys_is_cut_off_after_max_auth_attempts() {
    let door = Door::start(|raw, _| raw.ssh.max_auth_attempts = 2);
    // Three plain keys (no certificates): each offer is one refused attempt.
    let keys: Vec<_> = (0..3)
        .map(|i| {
            let key = door.lab.path(&format!("plain{i}"));
            let ok = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key)
                .status_bounded()
                .success();
            assert!(ok, "ssh-keygen");
            key
        })
        .collect();
    let mut cmd = Command::new("ssh");
    cmd.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
    ])
    .args([
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
    ])
    .args(["-o", "LogLevel=INFO", "-p", &door.ssh.to_string()]);
    for key in &keys {
        cmd.arg("-i").arg(key);
    }
    cmd.arg(format!("{}@127.0.0.1", crate::harness::USER))
        .arg("echo inside");
    let out = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let (stdout, stderr) = out_text(&out);
    assert_eq!(out.status.code(), Some(255), "{}", text(&out));
    assert!(!stdout.contains("inside"), "{}", text(&out));
    assert!(
        stderr.contains("Too many authentication attempts"),
        "{}",
        text(&out)
    );
    // The third key was never tried: the edge cut the connection after two refusals.
    let refused = door
        .log()
        .matches("plain public key refused: a certificate is required")
        .count();
    assert_eq!(refused, 2, "{}", door.log());

    // One key with its certificate is still one attempt.
    let out = door.ssh(&door.user_key, &[], "echo inside");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "inside\n",
        "{}",
        text(&out)
    );
}
