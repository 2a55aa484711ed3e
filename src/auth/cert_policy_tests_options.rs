//! Critical-option (source-address, force-command, unknown options) and
//! `parse_ca_entry` tests; shared helpers live in `cert_policy_tests.rs`.

use super::tests::{NOW, Spec, build, check, check_at, fp, key, policy_for, reject};
use super::*;

fn with_critical(critical: Vec<(&'static str, &'static str)>) -> Spec {
    Spec {
        critical,
        ..Spec::default()
    }
}

#[test]
fn source_address_match_and_mismatch() {
    let ca = key();
    let policy = policy_for(&ca);
    let cert = build(
        &ca,
        with_critical(vec![("source-address", "192.168.0.0/16,10.0.0.1")]),
    );
    assert!(check_at(&policy, &cert, "192.168.7.9", NOW).is_ok());
    assert!(check_at(&policy, &cert, "10.0.0.1", NOW).is_ok());
    let err = check_at(&policy, &cert, "10.0.0.2", NOW).unwrap_err();
    assert_eq!(err.reason(), "source_address");
    assert_eq!(
        err.to_string(),
        "peer 10.0.0.2 not in source-address \"192.168.0.0/16,10.0.0.1\""
    );
}

#[test]
fn source_address_ipv6() {
    let ca = key();
    let policy = policy_for(&ca);
    let cert = build(
        &ca,
        with_critical(vec![("source-address", "2001:db8::/32, 192.168.0.0/16")]),
    );
    assert!(check_at(&policy, &cert, "2001:db8::42", NOW).is_ok());
    let err = check_at(&policy, &cert, "2001:db9::1", NOW).unwrap_err();
    assert_eq!(err.reason(), "source_address");
}

#[test]
fn source_address_treats_mapped_ipv4_peer_as_ipv4() {
    let ca = key();
    let policy = policy_for(&ca);
    let cert = build(
        &ca,
        with_critical(vec![("source-address", "192.168.0.0/16")]),
    );
    assert!(check_at(&policy, &cert, "::ffff:192.168.1.2", NOW).is_ok());
    let err = check_at(&policy, &cert, "::ffff:10.0.0.1", NOW).unwrap_err();
    assert_eq!(
        err,
        CertRejection::SourceAddressMismatch {
            peer: "10.0.0.1".parse().unwrap(),
            allowed: "192.168.0.0/16".into()
        }
    );
}

#[test]
fn malformed_source_address_is_rejected() {
    let ca = key();
    let policy = policy_for(&ca);
    for bad in [
        "",
        "192.168.0.0/33",
        "10.0.0.0/8,,",
        "10.0.0.0/8,example.com",
        "10.0.0.1/",
    ] {
        let cert = build(&ca, with_critical(vec![("source-address", bad)]));
        let err = check_at(&policy, &cert, "10.0.0.1", NOW).unwrap_err();
        assert_eq!(err.reason(), "source_address", "{bad:?}");
        assert!(
            matches!(err, CertRejection::SourceAddressMalformed { .. }),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn force_command_enforced() {
    let ca = key();
    let cert = build(
        &ca,
        with_critical(vec![("force-command", "/usr/bin/rsync --server")]),
    );
    let id = check(&policy_for(&ca), &cert).unwrap();
    assert_eq!(id.force_command.as_deref(), Some("/usr/bin/rsync --server"));
}

#[test]
fn force_command_refused_by_policy() {
    let ca = key();
    let mut policy = policy_for(&ca);
    policy.force_command = ForceCommandPolicy::Refuse;
    let cert = build(
        &ca,
        with_critical(vec![("force-command", "/usr/bin/rsync --server")]),
    );
    let err = reject(&policy, &cert);
    assert_eq!(err.reason(), "force_command");
    assert_eq!(
        err.to_string(),
        "force-command \"/usr/bin/rsync --server\" refused by policy"
    );
    // A cert without the option is unaffected by Refuse.
    assert!(check(&policy, &build(&ca, Spec::default())).is_ok());
}

#[test]
fn force_command_policy_defaults_to_enforce() {
    assert_eq!(ForceCommandPolicy::default(), ForceCommandPolicy::Enforce);
}

#[test]
fn rejects_unknown_and_verify_required_critical_options() {
    let ca = key();
    for name in ["verify-required", "x-unknown@example.com"] {
        let cert = build(&ca, with_critical(vec![(name, "")]));
        let err = reject(&policy_for(&ca), &cert);
        assert_eq!(err.reason(), "critical_option");
        assert_eq!(
            err.to_string(),
            format!("unsupported critical option \"{name}\"")
        );
    }
    // Alongside known options, the unknown one still rejects.
    let cert = build(
        &ca,
        with_critical(vec![
            ("force-command", "true"),
            ("no-such-option", ""),
            ("source-address", "10.0.0.0/8"),
        ]),
    );
    assert_eq!(reject(&policy_for(&ca), &cert).reason(), "critical_option");
}

#[test]
fn parse_ca_entry_accepts_key_line() {
    let ca = key();
    let line = ca.public_key().to_openssh().unwrap();
    assert_eq!(parse_ca_entry(&line).unwrap(), fp(&ca));
    let commented = format!("  {line} ops-ca@example  \n");
    assert_eq!(parse_ca_entry(&commented).unwrap(), fp(&ca));
}

#[test]
fn parse_ca_entry_accepts_fingerprint() {
    let ca = key();
    let text = fp(&ca).to_string();
    assert!(text.starts_with("SHA256:"));
    assert_eq!(parse_ca_entry(&text).unwrap(), fp(&ca));
    let sha512 = ca.public_key().fingerprint(HashAlg::Sha512);
    assert_eq!(parse_ca_entry(&sha512.to_string()).unwrap(), sha512);
}

#[test]
fn parse_ca_entry_rejects_garbage() {
    assert_eq!(parse_ca_entry("   "), Err(CaEntryError::Empty));
    assert!(matches!(
        parse_ca_entry("SHA256:not-base64!!"),
        Err(CaEntryError::BadFingerprint { .. })
    ));
    assert!(matches!(
        parse_ca_entry("SHA256:AAAA"),
        Err(CaEntryError::BadFingerprint { .. })
    ));
    assert!(matches!(
        parse_ca_entry("ssh-ed25519 AAAAnotakey"),
        Err(CaEntryError::BadPublicKey { .. })
    ));
    assert!(matches!(
        parse_ca_entry("hello world"),
        Err(CaEntryError::BadPublicKey { .. })
    ));
    // A certificate line is not a CA key.
    let ca = key();
    let cert_line = build(&ca, Spec::default()).to_openssh().unwrap();
    assert!(parse_ca_entry(&cert_line).is_err());
}
