use super::*;
use russh::keys::ssh_key::{PrivateKey, certificate::Builder, private::Ed25519Keypair};

pub(super) const NOW: u64 = 1_700_000_000;
pub(super) const HOUR: u64 = 3600;
pub(super) const JOB: &str = "abc1234";

pub(super) fn key() -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()))
}

pub(super) fn fp(key: &PrivateKey) -> Fingerprint {
    key.public_key().fingerprint(HashAlg::Sha256)
}

pub(super) fn policy_for(ca: &PrivateKey) -> CertPolicy {
    CertPolicy {
        trusted_ca_fingerprints: vec![fp(ca)],
        max_clock_skew_secs: 60,
        ..CertPolicy::default()
    }
}

/// Knobs for one test certificate; defaults give a valid user cert for `JOB`.
pub(super) struct Spec {
    pub(super) cert_type: CertType,
    pub(super) serial: u64,
    pub(super) key_id: &'static str,
    pub(super) principals: Vec<&'static str>,
    pub(super) valid_after: u64,
    pub(super) valid_before: u64,
    pub(super) critical: Vec<(&'static str, &'static str)>,
    pub(super) extensions: Vec<&'static str>,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            cert_type: CertType::User,
            serial: 42,
            key_id: "alice@example",
            principals: vec!["alice", JOB],
            valid_after: NOW - HOUR,
            valid_before: NOW + HOUR,
            critical: vec![],
            extensions: vec!["permit-pty", "permit-port-forwarding"],
        }
    }
}

pub(super) fn build(ca: &PrivateKey, spec: Spec) -> Certificate {
    let user = key();
    let mut b = Builder::new(
        rand::random::<[u8; 32]>().to_vec(),
        user.public_key().key_data().clone(),
        spec.valid_after,
        spec.valid_before,
    )
    .unwrap();
    b.serial(spec.serial).unwrap();
    b.key_id(spec.key_id).unwrap();
    b.cert_type(spec.cert_type).unwrap();
    if spec.principals.is_empty() {
        b.all_principals_valid().unwrap();
    }
    for p in spec.principals {
        b.valid_principal(p).unwrap();
    }
    for (name, value) in spec.critical {
        b.critical_option(name, value).unwrap();
    }
    for e in spec.extensions {
        b.extension(e, "").unwrap();
    }
    b.sign(ca).unwrap()
}

pub(super) fn check_at(
    policy: &CertPolicy,
    cert: &Certificate,
    peer: &str,
    now: u64,
) -> Result<CertIdentity, CertRejection> {
    check_user_certificate(
        policy,
        &CertCheck {
            cert,
            required_principal: JOB,
            peer_ip: peer.parse().unwrap(),
            now_unix: now,
        },
    )
}

pub(super) fn check(
    policy: &CertPolicy,
    cert: &Certificate,
) -> Result<CertIdentity, CertRejection> {
    check_at(policy, cert, "10.0.0.1", NOW)
}

pub(super) fn reject(policy: &CertPolicy, cert: &Certificate) -> CertRejection {
    check(policy, cert).unwrap_err()
}

#[test]
fn accepts_valid_cert_and_reports_identity() {
    let ca = key();
    let cert = build(&ca, Spec::default());
    let id = check(&policy_for(&ca), &cert).unwrap();
    assert_eq!(
        id,
        CertIdentity {
            key_id: "alice@example".into(),
            serial: 42,
            principals: vec!["alice".into(), JOB.into()],
            ca_fingerprint: fp(&ca).to_string(),
            valid_before: NOW + HOUR,
            force_command: None,
            extensions: vec!["permit-port-forwarding".into(), "permit-pty".into()],
        }
    );
    assert!(id.ca_fingerprint.starts_with("SHA256:"));
    assert!(id.permits("permit-pty"));
    assert!(id.permits("permit-port-forwarding"));
    assert!(!id.permits("permit-agent-forwarding"));
    assert!(!id.permits("permit-X11-forwarding"));
}

#[test]
fn accepts_any_of_several_trusted_cas() {
    let (ca, other) = (key(), key());
    let mut policy = policy_for(&other);
    policy.trusted_ca_fingerprints.push(fp(&ca));
    assert!(check(&policy, &build(&ca, Spec::default())).is_ok());
}

#[test]
fn sha512_trusted_fingerprint_is_honoured() {
    let ca = key();
    let policy = CertPolicy {
        trusted_ca_fingerprints: vec![ca.public_key().fingerprint(HashAlg::Sha512)],
        ..CertPolicy::default()
    };
    let id = check(&policy, &build(&ca, Spec::default())).unwrap();
    assert_eq!(id.ca_fingerprint, fp(&ca).to_string());
}

#[test]
fn rejects_tampered_certificate_signature() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            key_id: "alice-key-id-xyz",
            ..Spec::default()
        },
    );
    let mut bytes = cert.to_bytes().unwrap();
    let needle = b"alice-key-id-xyz";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    bytes[pos] = b'm'; // "malice-…": same length, still valid UTF-8
    let tampered = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(tampered.key_id(), "mlice-key-id-xyz");
    // Untrusted CA too: the signature failure must win.
    let policy = CertPolicy::default();
    let err = reject(&policy, &tampered);
    assert_eq!(err.reason(), "bad_signature");
    assert_eq!(
        err,
        CertRejection::BadSignature {
            ca: fp(&ca).to_string()
        }
    );
    // The untouched original is fine.
    assert!(check(&policy_for(&ca), &cert).is_ok());
}

#[test]
fn rejects_untrusted_ca_and_names_both_sides() {
    let (ca, a, b) = (key(), key(), key());
    let policy = CertPolicy {
        trusted_ca_fingerprints: vec![fp(&a), fp(&b)],
        ..CertPolicy::default()
    };
    let err = reject(&policy, &build(&ca, Spec::default()));
    assert_eq!(err.reason(), "untrusted_ca");
    assert_eq!(
        err.to_string(),
        format!(
            "certificate signed by untrusted CA {}; remote trusts {}, {}",
            fp(&ca),
            fp(&a),
            fp(&b)
        )
    );
    let none = reject(&CertPolicy::default(), &build(&ca, Spec::default()));
    assert!(none.to_string().ends_with("remote trusts no CA"), "{none}");
}

#[test]
fn rejects_host_certificate() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            cert_type: CertType::Host,
            ..Spec::default()
        },
    );
    let err = reject(&policy_for(&ca), &cert);
    assert_eq!(err.reason(), "not_user_cert");
    assert!(
        err.to_string()
            .starts_with("host certificate presented as user certificate")
    );
}

#[test]
fn rejects_revoked_serial() {
    let ca = key();
    let mut policy = policy_for(&ca);
    policy.revoked_serials.insert(42);
    let err = reject(&policy, &build(&ca, Spec::default()));
    assert_eq!(err.reason(), "revoked");
    assert_eq!(
        err.to_string(),
        "revoked serial 42 (key id \"alice@example\")"
    );
    let other = build(
        &ca,
        Spec {
            serial: 43,
            ..Spec::default()
        },
    );
    assert!(check(&policy, &other).is_ok());
}

#[test]
fn rejects_revoked_key_id() {
    let ca = key();
    let mut policy = policy_for(&ca);
    policy.revoked_key_ids.insert("alice".into());
    let cert = build(
        &ca,
        Spec {
            key_id: "alice",
            ..Spec::default()
        },
    );
    let err = reject(&policy, &cert);
    assert_eq!(err.reason(), "revoked");
    assert_eq!(err.to_string(), "revoked key id \"alice\" (serial 42)");
    // Exact match only.
    assert!(check(&policy, &build(&ca, Spec::default())).is_ok());
}

#[test]
fn rejects_expired_beyond_skew() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            valid_before: NOW - 61,
            ..Spec::default()
        },
    );
    let err = reject(&policy_for(&ca), &cert);
    assert_eq!(err.reason(), "expired");
    assert_eq!(
        err.to_string(),
        format!("certificate expired at {} (now {NOW}, skew 60s)", NOW - 61)
    );
}

#[test]
fn rejects_not_yet_valid_beyond_skew() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            valid_after: NOW + 61,
            valid_before: NOW + HOUR,
            ..Spec::default()
        },
    );
    let err = reject(&policy_for(&ca), &cert);
    assert_eq!(err.reason(), "not_yet_valid");
    assert_eq!(
        err,
        CertRejection::NotYetValid {
            valid_after: NOW + 61,
            now: NOW,
            skew_secs: 60
        }
    );
}

#[test]
fn skew_tolerates_slightly_early_and_late() {
    let ca = key();
    let policy = policy_for(&ca);
    let early = build(
        &ca,
        Spec {
            valid_after: NOW + 60,
            ..Spec::default()
        },
    );
    assert!(check(&policy, &early).is_ok());
    let late = build(
        &ca,
        Spec {
            valid_before: NOW - 59,
            ..Spec::default()
        },
    );
    assert!(check(&policy, &late).is_ok());
    // valid_before is exclusive: now == valid_before + skew is expired.
    let edge = build(
        &ca,
        Spec {
            valid_before: NOW - 60,
            ..Spec::default()
        },
    );
    assert_eq!(reject(&policy, &edge).reason(), "expired");
    // Without skew, the window is exact.
    let strict = CertPolicy {
        max_clock_skew_secs: 0,
        ..policy
    };
    assert_eq!(reject(&strict, &early).reason(), "not_yet_valid");
    assert_eq!(reject(&strict, &late).reason(), "expired");
}

#[test]
fn forever_certificate_accepted_without_overflow() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            valid_after: 0,
            valid_before: u64::MAX,
            ..Spec::default()
        },
    );
    let mut policy = policy_for(&ca);
    policy.max_clock_skew_secs = u64::MAX;
    let id = check_at(&policy, &cert, "10.0.0.1", u64::MAX - 1).unwrap();
    assert_eq!(id.valid_before, u64::MAX);
    assert!(check_at(&policy, &cert, "10.0.0.1", u64::MAX).is_ok());
}

#[test]
fn rejects_certificate_without_principals() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            principals: vec![],
            ..Spec::default()
        },
    );
    let err = reject(&policy_for(&ca), &cert);
    assert_eq!(err.reason(), "no_principals");
    assert!(err.to_string().starts_with("certificate has no principals"));
}

#[test]
fn rejects_another_tenants_principal() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            principals: vec!["x", "abc1234x", "ABC1234"],
            ..Spec::default()
        },
    );
    let err = reject(&policy_for(&ca), &cert);
    assert_eq!(err.reason(), "principal_mismatch");
    assert_eq!(
        err.to_string(),
        "certificate principals [\"x\", \"abc1234x\", \"ABC1234\"] do not include required principal \"abc1234\""
    );
}

#[test]
fn empty_required_principal_never_matches() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            principals: vec![""],
            ..Spec::default()
        },
    );
    let err = check_user_certificate(
        &policy_for(&ca),
        &CertCheck {
            cert: &cert,
            required_principal: "",
            peer_ip: "10.0.0.1".parse().unwrap(),
            now_unix: NOW,
        },
    )
    .unwrap_err();
    assert_eq!(err.reason(), "principal_mismatch");
}

#[test]
fn unknown_extensions_are_fine() {
    let ca = key();
    let cert = build(
        &ca,
        Spec {
            extensions: vec!["no-touch-required", "x-custom@example.com"],
            ..Spec::default()
        },
    );
    let id = check(&policy_for(&ca), &cert).unwrap();
    assert!(id.permits("x-custom@example.com"));
    assert!(!id.permits("permit-pty"));
}

#[test]
fn log_lines_escape_and_cap_untrusted_strings() {
    let ca = key();
    let mut policy = policy_for(&ca);
    policy.revoked_key_ids.insert("evil\nFAKE LOG LINE".into());
    let cert = build(
        &ca,
        Spec {
            key_id: "evil\nFAKE LOG LINE",
            ..Spec::default()
        },
    );
    let line = reject(&policy, &cert).to_string();
    assert!(!line.contains('\n'), "{line}");
    assert!(line.contains("\\n"), "{line}");

    let long = "x".repeat(10_000);
    let err = CertRejection::UnsupportedCriticalOption { name: long };
    assert!(err.to_string().len() < 200);
    let many: Vec<String> = (0..100).map(|i| format!("p{i}")).collect();
    let err = CertRejection::PrincipalMismatch {
        principals: many,
        required: JOB.into(),
    };
    assert!(err.to_string().contains("... (84 more)]"), "{err}");
}

#[test]
fn every_reason_label_is_snake_case() {
    let labels = [
        CertRejection::BadSignature { ca: String::new() }.reason(),
        CertRejection::NotUserCert {
            key_id: String::new(),
        }
        .reason(),
        CertRejection::SourceAddressMalformed {
            value: String::new(),
            entry: String::new(),
        }
        .reason(),
    ];
    for l in labels {
        assert!(l.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{l}");
    }
}

#[test]
fn policy_trust_helper() {
    let (ca, other) = (key(), key());
    let policy = policy_for(&ca);
    assert!(policy.trusts(ca.public_key().key_data()));
    assert!(!policy.trusts(other.public_key().key_data()));
}
