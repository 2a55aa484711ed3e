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
            .status()
            .unwrap()
            .success()
    );

    let cases: Vec<(&str, std::path::PathBuf, Option<&str>)> = vec![
        (
            "expired",
            w.keygen_cert("expired", "user_ca", Some(JOB), "20200101:20200102", &[]),
            None,
        ),
        (
            "not yet valid",
            w.keygen_cert("future", "user_ca", Some(JOB), "+1d:+2d", &[]),
            None,
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
                "{name}: counter {reason} did not move ({before} -> {after})"
            );
        }
    }
    // And the edge still serves a good certificate afterwards.
    let out = w.ssh(Via::Connect, HOST, &[], "echo still-serving");
    assert_eq!(stdout(&out).trim(), "still-serving", "{}", stderr(&out));
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
#[test]
fn a_host_certificate_presented_as_a_user_certificate_is_refused() {
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

    let w = World::start();
    let key = ssh_edge::upstream::random_ed25519_key();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut b = Builder::new(
        vec![7u8; 32],
        key.public_key().key_data().clone(),
        now - 60,
        now + 600,
    )
    .unwrap();
    b.cert_type(CertType::Host)
        .unwrap()
        .key_id("host-as-user")
        .unwrap()
        .valid_principal(JOB)
        .unwrap();
    let cert = b.sign(&w.lab.user_ca).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let accepted = rt.block_on(async {
        let config = Arc::new(russh::client::Config::default());
        let mut handle = russh::client::connect(config, ("127.0.0.1", w.ssh_port), AcceptEdgeKey)
            .await
            .unwrap();
        let result = handle
            .authenticate_openssh_cert("training-job-abc1234-0", Arc::new(key), cert)
            .await
            .unwrap();
        result.success()
    });
    assert!(!accepted, "a host certificate opened a user session");
    assert!(
        w.metric("ssh_edge_auth_failures_total{reason=\"not_user_cert\"}") >= 1,
        "{}",
        w.metrics.render()
    );
}
