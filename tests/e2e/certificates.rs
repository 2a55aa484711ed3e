//! The certificate matrix: every certificate the edge must refuse, issued by the real
//! `ssh-keygen`, refused through a real `ssh` client, and counted.

use crate::cert_login::{fresh_cert, login_with_cert, tamper_signature};
use crate::world::*;

/// Runs `ssh … true` with `key` and returns (exit code, stderr).
fn attempt(w: &World, via: Via, key: &std::path::Path) -> (Option<i32>, String) {
    let out = w.ssh_as(key, via, HOST, &[], "echo inside");
    (out.status.code(), stderr(&out) + &stdout(&out))
}

fn assert_denied(w: &World, name: &str, key: &std::path::Path) {
    for via in [Via::Connect, Via::PlainSsh] {
        let (code, text) = attempt(w, via, key);
        assert_eq!(
            code,
            Some(255),
            "{name} via {via:?} was not refused: {text}"
        );
        assert!(
            text.contains("Permission denied"),
            "{name} via {via:?}: {text}"
        );
        assert!(!text.contains("inside"), "{name} via {via:?} ran a command");
    }
}

#[test]
fn refused_certificates_are_denied_and_counted_by_reason() {
    let w = World::start_with(|raw| {
        let default = raw.remotes.get_mut("default").unwrap();
        default.revoked_serials = vec![4242];
        default.revoked_key_ids = vec!["stolen-laptop".into()];
    });
    // A CA nobody trusts.
    let rogue = w.lab.path("rogue_ca");
    assert!(
        std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&rogue)
            .status_bounded()
            .success()
    );

    let cases: Vec<(&str, std::path::PathBuf, Option<&str>)> = vec![
        // OpenSSH's ssh (9.2) offers an expired certificate too; the edge refuses it as
        // expired (then the plain key, as not_certificate).
        (
            "expired",
            w.keygen_cert("expired", "user_ca", Some(JOB), "20200101:20200102", &[]),
            Some("expired"),
        ),
        (
            "not yet valid",
            w.keygen_cert("future", "user_ca", Some(JOB), "+1d:+2d", &[]),
            Some("not_yet_valid"),
        ),
        (
            "unknown CA",
            w.keygen_cert("rogue", "rogue_ca", Some(JOB), "+10m", &[]),
            Some("untrusted_ca"),
        ),
        (
            "other tenant's CA",
            w.keygen_cert("tenantb", "tenant_b_ca", Some(JOB), "+10m", &[]),
            Some("untrusted_ca"),
        ),
        (
            "no principals",
            w.keygen_cert("noprinc", "user_ca", None, "+10m", &[]),
            Some("no_principals"),
        ),
        (
            "another job's principal",
            w.keygen_cert("otherjob", "user_ca", Some("other99"), "+10m", &[]),
            Some("principal_mismatch"),
        ),
        (
            "source-address mismatch",
            w.keygen_cert(
                "srcaddr",
                "user_ca",
                Some(JOB),
                "+10m",
                &["-O", "source-address=10.1.2.0/24,192.0.2.7"],
            ),
            Some("source_address"),
        ),
        (
            "revoked serial",
            w.keygen_cert("revoked", "user_ca", Some(JOB), "+10m", &["-z", "4242"]),
            Some("revoked"),
        ),
        (
            "revoked key id",
            w.keygen_cert(
                "stolen-laptop",
                "user_ca",
                Some(JOB),
                "+10m",
                &["-I", "stolen-laptop"],
            ),
            Some("revoked"),
        ),
    ];
    for (name, key, reason) in &cases {
        let before =
            reason.map(|r| w.metric(&format!("ssh_edge_auth_failures_total{{reason=\"{r}\"}}")));
        assert_denied(&w, name, key);
        if let (Some(reason), Some(before)) = (reason, before) {
            let after = w.metric(&format!(
                "ssh_edge_auth_failures_total{{reason=\"{reason}\"}}"
            ));
            assert!(
                after > before,
                "{name}: counter {reason} did not move ({before} -> {after}): {}",
                w.metrics.render()
            );
        }
    }
    // And the edge still serves a good certificate afterwards.
    let out = w.ssh(Via::Connect, HOST, &[], "echo still-serving");
    assert_eq!(stdout(&out).trim(), "still-serving", "{}", stderr(&out));
}

#[test]
fn a_certificate_from_a_clock_slightly_ahead_is_accepted_within_the_skew() {
    // Valid from 30 s in the future, as a signer whose clock runs ahead would issue it; the
    // default `auth.max_clock_skew_secs` (60) absorbs that.
    let w = World::start();
    let ahead = w.keygen_cert("ahead", "user_ca", Some(JOB), "+30s:+10m", &[]);
    let out = w.ssh_as(&ahead, Via::PlainSsh, HOST, &[], "echo skew-ok");
    assert_eq!(stdout(&out).trim(), "skew-ok", "{}", stderr(&out));
}

#[test]
fn matching_source_address_and_force_command_are_honoured() {
    let w = World::start();
    let ok = w.keygen_cert(
        "srcok",
        "user_ca",
        Some(JOB),
        "+10m",
        &["-O", "source-address=127.0.0.0/8"],
    );
    let out = w.ssh_as(&ok, Via::PlainSsh, HOST, &[], "echo src-ok");
    assert_eq!(stdout(&out).trim(), "src-ok", "{}", stderr(&out));

    let forced = w.keygen_cert(
        "forced",
        "user_ca",
        Some(JOB),
        "+10m",
        &["-O", "force-command=echo forced-by-cert"],
    );
    let out = w.ssh_as(&forced, Via::Connect, HOST, &[], "echo what-the-user-asked");
    assert_eq!(stdout(&out).trim(), "forced-by-cert", "{}", stderr(&out));
}

#[test]
fn force_command_refuse_policy_denies_such_certificates() {
    let w = World::start_with(|raw| raw.auth.force_command = "refuse".into());
    let forced = w.keygen_cert(
        "forced",
        "user_ca",
        Some(JOB),
        "+10m",
        &["-O", "force-command=echo x"],
    );
    assert_denied(&w, "force-command under refuse", &forced);
    assert!(w.metric("ssh_edge_auth_failures_total{reason=\"force_command\"}") >= 1);
}

#[test]
fn a_tenant_b_certificate_opens_only_tenant_b_hosts() {
    let w = World::start();
    let key = w.keygen_cert("tb", "tenant_b_ca", Some(JOB), "+10m", &[]);
    let out = w.ssh_as(
        &key,
        Via::Connect,
        "training-job-abc1234-0.tenant-b.ssh.baseten.co",
        &[],
        "echo tenant-b-inside",
    );
    assert_eq!(stdout(&out).trim(), "tenant-b-inside", "{}", stderr(&out));
    // The default user's certificate is not trusted by tenant-b.
    let out = w.ssh(
        Via::Connect,
        "training-job-abc1234-0.tenant-b.ssh.baseten.co",
        &[],
        "echo nope",
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

/// A certificate from the lab's user CA for a fresh key (principal `JOB`), and that key.
fn lab_cert(
    w: &World,
    host_type: bool,
    valid_after: u64,
    valid_before: u64,
) -> (russh::keys::PrivateKey, russh::keys::Certificate) {
    fresh_cert(&w.lab.user_ca, JOB, host_type, valid_after, valid_before)
}

/// Logs in to front C with a certificate the real `ssh` will not present (a host
/// certificate, an expired one), through a russh client; returns whether it was accepted.
fn russh_login_with_cert(w: &World, host_type: bool, valid_after: u64, valid_before: u64) -> bool {
    let (key, cert) = lab_cert(w, host_type, valid_after, valid_before);
    login_with_cert(
        ([127, 0, 0, 1], w.ssh_port).into(),
        "training-job-abc1234-0",
        key,
        cert,
    )
    .0
}

#[test]
fn certificates_openssh_would_not_present_are_refused_and_counted() {
    let w = World::start();
    let now = ssh_edge::time::unix_now();
    assert!(
        !russh_login_with_cert(&w, true, now - 60, now + 600),
        "a host certificate opened a user session"
    );
    assert!(
        w.metric("ssh_edge_auth_failures_total{reason=\"not_user_cert\"}") >= 1,
        "{}",
        w.metrics.render()
    );
    // Expired an hour ago: beyond any skew. The edge's policy sees it (our russh patch), so
    // it is logged with its key id and counted.
    assert!(
        !russh_login_with_cert(&w, false, now - 7200, now - 3600),
        "an expired certificate opened a session"
    );
    assert!(
        w.metric("ssh_edge_auth_failures_total{reason=\"expired\"}") >= 1,
        "{}",
        w.metrics.render()
    );
    // A certificate from the trusted CA whose signature was edited afterwards (OpenSSH's
    // `ssh` checks the signature when it loads the file and does not offer it). russh refuses
    // it before the policy runs; the edge's hook counts it.
    let before = w.metric("ssh_edge_auth_failures_total{reason=\"bad_signature\"}");
    let (key, cert) = lab_cert(&w, false, now - 60, now + 600);
    let (accepted, _) = login_with_cert(
        ([127, 0, 0, 1], w.ssh_port).into(),
        "training-job-abc1234-0",
        key,
        tamper_signature(&cert),
    );
    assert!(
        !accepted,
        "a certificate with a tampered signature opened a session"
    );
    assert_eq!(
        w.metric("ssh_edge_auth_failures_total{reason=\"bad_signature\"}"),
        before + 1,
        "{}",
        w.metrics.render()
    );
    assert!(
        w.metrics
            .render()
            .contains("ssh_edge_auth_failures_total{reason=\"bad_signature\"}"),
        "the bad_signature series is missing"
    );
}

/// OpenSSH offers its identities in turn; after the edge refuses the first, the second must be
/// tried at once. The client's next `SERVICE_REQUEST` used to go unanswered, so it sat in its
/// 30 s wait before falling back. The run is bounded well below that: a hang fails the test.
#[test]
fn a_second_identity_is_tried_after_the_first_is_refused() {
    let w = World::start();
    let refused = w.keygen_cert("first-refused", "user_ca", Some("other99"), "+10m", &[]);
    for via in [Via::PlainSsh, Via::Connect] {
        let mut args = w.ssh_args_with_key(&refused, via, HOST);
        let dest = args.pop().unwrap();
        args.extend([
            "-i".to_string(),
            w.user_key.display().to_string(),
            "-o".into(),
            format!("CertificateFile={}-cert.pub", w.user_key.display()),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            dest,
            "echo second-key-ok".into(),
        ]);
        let out = run_with_timeout(
            std::process::Command::new("ssh").args(&args),
            std::time::Duration::from_secs(15),
        );
        assert_eq!(
            stdout(&out).trim(),
            "second-key-ok",
            "{via:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        w.metric("ssh_edge_auth_failures_total{reason=\"principal_mismatch\"}") >= 2,
        "the first identity was not offered and refused: {}",
        w.metrics.render()
    );
}
