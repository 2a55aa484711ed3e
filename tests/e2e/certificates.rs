//! The certificate matrix: every certificate the edge must refuse, issued by the real
//! `ssh-keygen`, refused through a real `ssh` client, and counted.

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
        // OpenSSH's ssh does not even offer an expired certificate (it falls back to the
        // plain key); the russh-client test below shows the edge counting one.
        (
            "expired",
            w.keygen_cert("expired", "user_ca", Some(JOB), "20200101:20200102", &[]),
            Some("not_certificate"),
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

/// OpenSSH's client will not offer a host certificate for user authentication, so this case
/// uses a russh client: a host certificate from the trusted CA, presented as a user's.
/// Logs in to front C with a certificate the real `ssh` will not present (a host
/// certificate, an expired one), through a russh client; returns whether it was accepted.
fn russh_login_with_cert(w: &World, host_type: bool, valid_after: u64, valid_before: u64) -> bool {
    use std::sync::Arc;

    use russh::keys::ssh_key::certificate::{Builder, CertType};

    struct AcceptEdgeKey;
    impl russh::client::Handler for AcceptEdgeKey {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            _key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    let key = ssh_edge::upstream::random_ed25519_key();
    let mut b = Builder::new(
        vec![7u8; 32],
        key.public_key().key_data().clone(),
        valid_after,
        valid_before,
    )
    .unwrap();
    let cert_type = if host_type {
        CertType::Host
    } else {
        CertType::User
    };
    b.cert_type(cert_type)
        .unwrap()
        .key_id("russh-presented")
        .unwrap()
        .valid_principal(JOB)
        .unwrap();
    let cert = b.sign(&w.lab.user_ca).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = Arc::new(russh::client::Config::default());
        let mut handle = russh::client::connect(config, ("127.0.0.1", w.ssh_port), AcceptEdgeKey)
            .await
            .unwrap();
        let result = handle
            .authenticate_openssh_cert("training-job-abc1234-0", Arc::new(key), cert)
            .await
            .unwrap();
        result.success()
    })
}

#[test]
fn certificates_openssh_would_not_present_are_refused_and_counted() {
    let w = World::start();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
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
}
