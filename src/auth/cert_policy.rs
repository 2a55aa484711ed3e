//! Edge policy for OpenSSH user certificates (pure: no I/O, no clock).
//!
//! The SSH library has already checked that the client holds the private key
//! matching the certificate's public key. This module decides whether the
//! certificate itself is acceptable for a given remote (tenant) and route:
//! CA signature and trust, certificate type, revocation, validity window,
//! principals and critical options. On success it returns a [`CertIdentity`]
//! for audit events; on failure a [`CertRejection`] whose `Display` is a
//! precise operator log line (never sent to the client) and whose
//! [`CertRejection::reason`] is a bounded metrics label.
//!
//! Certificate-controlled strings (key id, principals, option values) are
//! escaped and truncated (see [`crate::text`]) before they reach a log line,
//! so a hostile certificate cannot forge log records or flood the log.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;
use russh::keys::ssh_key::{
    Certificate, Fingerprint, HashAlg, PublicKey, certificate::CertType, public::KeyData,
};

use crate::text::{quote_untrusted, quote_untrusted_list};

/// Name of the OpenSSH critical option restricting client source addresses.
pub(crate) const SOURCE_ADDRESS: &str = "source-address";
/// Name of the OpenSSH critical option forcing a command.
pub(crate) const FORCE_COMMAND: &str = "force-command";

/// Longest certificate-controlled text (in escaped output characters) copied into a log line.
const MAX_LOGGED_CHARS: usize = 128;
/// Most principals listed in a log line.
const MAX_LOGGED_PRINCIPALS: usize = 16;

/// What to do with a certificate that carries a `force-command` critical option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForceCommandPolicy {
    /// Accept the certificate and report the command in [`CertIdentity::force_command`];
    /// the session layer must run that command instead of what the client asks for.
    #[default]
    Enforce,
    /// Reject certificates that carry `force-command`.
    Refuse,
}

/// Per-remote (tenant) policy, built from config once.
#[derive(Debug, Clone, Default)]
pub struct CertPolicy {
    /// Fingerprints of CA public keys this remote trusts (normally SHA-256;
    /// SHA-512 entries are honoured too).
    pub trusted_ca_fingerprints: Vec<Fingerprint>,
    pub revoked_serials: HashSet<u64>,
    pub revoked_key_ids: HashSet<String>,
    pub max_clock_skew_secs: u64,
    pub force_command: ForceCommandPolicy,
}

impl CertPolicy {
    /// Whether `ca_key` matches one of the trusted fingerprints.
    #[must_use]
    pub(crate) fn trusts(&self, ca_key: &KeyData) -> bool {
        self.trusted_ca_fingerprints
            .iter()
            .any(|trusted| ca_key.fingerprint(trusted.algorithm()) == *trusted)
    }

    fn trusted_list(&self) -> String {
        if self.trusted_ca_fingerprints.is_empty() {
            return "no CA".to_owned();
        }
        let mut out = String::new();
        for (i, fp) in self.trusted_ca_fingerprints.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{fp}");
        }
        out
    }
}

/// One certificate presented on one connection for one route.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CertCheck<'a> {
    pub cert: &'a Certificate,
    /// The principal the route requires (e.g. the job id): must be among the cert's principals.
    pub required_principal: &'a str,
    pub peer_ip: IpAddr,
    pub now_unix: u64,
}

/// What the edge learned from an accepted certificate; goes into every audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertIdentity {
    pub key_id: String,
    pub serial: u64,
    pub principals: Vec<String>,
    /// SHA-256 fingerprint of the signing CA, `"SHA256:…"`.
    pub ca_fingerprint: String,
    /// `u64::MAX` means "forever".
    pub valid_before: u64,
    /// Present when the cert carries a `force-command` critical option and the policy enforces it.
    pub force_command: Option<String>,
    /// Extension names (permit-pty, permit-port-forwarding, permit-agent-forwarding,
    /// permit-X11-forwarding, permit-user-rc, …), sorted.
    pub extensions: Vec<String>,
}

impl CertIdentity {
    /// Whether the certificate carries the named extension (exact, case-sensitive match).
    #[must_use]
    pub(crate) fn permits(&self, extension: &str) -> bool {
        self.extensions.iter().any(|e| e == extension)
    }
}

/// Why a certificate was refused. `Display` is an operator log line; never send it to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertRejection {
    #[error("certificate signature does not verify against its CA key {ca}")]
    BadSignature { ca: String },

    #[error("certificate signed by untrusted CA {ca}; remote trusts {trusted}")]
    UntrustedCa { ca: String, trusted: String },

    #[error("host certificate presented as user certificate (key id {})", quoted(.key_id))]
    NotUserCert { key_id: String },

    #[error("revoked serial {serial} (key id {})", quoted(.key_id))]
    RevokedSerial { serial: u64, key_id: String },

    #[error("revoked key id {} (serial {serial})", quoted(.key_id))]
    RevokedKeyId { key_id: String, serial: u64 },

    #[error("certificate expired at {valid_before} (now {now}, skew {skew_secs}s)")]
    Expired {
        valid_before: u64,
        now: u64,
        skew_secs: u64,
    },

    #[error("certificate not valid before {valid_after} (now {now}, skew {skew_secs}s)")]
    NotYetValid {
        valid_after: u64,
        now: u64,
        skew_secs: u64,
    },

    #[error("certificate has no principals (key id {})", quoted(.key_id))]
    NoPrincipals { key_id: String },

    #[error(
        "certificate principals {} do not include required principal {}",
        principal_list(.principals),
        quoted(.required)
    )]
    PrincipalMismatch {
        principals: Vec<String>,
        required: String,
    },

    #[error("peer {peer} not in source-address {}", quoted(.allowed))]
    SourceAddressMismatch { peer: IpAddr, allowed: String },

    #[error("malformed source-address {} (bad entry {})", quoted(.value), quoted(.entry))]
    SourceAddressMalformed { value: String, entry: String },

    #[error("force-command {} refused by policy", quoted(.command))]
    ForceCommandRefused { command: String },

    #[error("unsupported critical option {}", quoted(.name))]
    UnsupportedCriticalOption { name: String },
}

impl CertRejection {
    /// The CA signature does not verify (the SSH library refuses such a certificate itself and
    /// tells the edge through a hook, so this is also built outside [`check_user_certificate`]).
    #[must_use]
    pub(crate) fn bad_signature(cert: &Certificate) -> Self {
        Self::BadSignature {
            ca: cert
                .signature_key()
                .fingerprint(HashAlg::Sha256)
                .to_string(),
        }
    }

    /// Stable `snake_case` label for metrics (bounded cardinality).
    #[must_use]
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::BadSignature { .. } => "bad_signature",
            Self::UntrustedCa { .. } => "untrusted_ca",
            Self::NotUserCert { .. } => "not_user_cert",
            Self::RevokedSerial { .. } | Self::RevokedKeyId { .. } => "revoked",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::NoPrincipals { .. } => "no_principals",
            Self::PrincipalMismatch { .. } => "principal_mismatch",
            Self::SourceAddressMismatch { .. } | Self::SourceAddressMalformed { .. } => {
                "source_address"
            }
            Self::ForceCommandRefused { .. } => "force_command",
            Self::UnsupportedCriticalOption { .. } => "critical_option",
        }
    }
}

/// Apply the remote's policy to a user certificate whose key the client has proven it holds.
///
/// Checks run in a fixed order and the first failure wins, so the logged reason is the most
/// fundamental one: CA signature, CA trust, certificate type, revoked serial, revoked key id,
/// validity window (with skew), principals present, required principal present, critical options.
///
/// # Errors
/// The first rule the certificate breaks, as a [`CertRejection`].
pub(crate) fn check_user_certificate(
    policy: &CertPolicy,
    check: &CertCheck<'_>,
) -> Result<CertIdentity, CertRejection> {
    let cert = check.cert;
    let ca_key = cert.signature_key();
    let ca = ca_key.fingerprint(HashAlg::Sha256).to_string();

    if cert.verify_signature().is_err() {
        return Err(CertRejection::BadSignature { ca });
    }
    if !policy.trusts(ca_key) {
        return Err(CertRejection::UntrustedCa {
            ca,
            trusted: policy.trusted_list(),
        });
    }
    if cert.cert_type() != CertType::User {
        return Err(CertRejection::NotUserCert {
            key_id: cert.key_id().to_owned(),
        });
    }
    if policy.revoked_serials.contains(&cert.serial()) {
        return Err(CertRejection::RevokedSerial {
            serial: cert.serial(),
            key_id: cert.key_id().to_owned(),
        });
    }
    if policy.revoked_key_ids.contains(cert.key_id()) {
        return Err(CertRejection::RevokedKeyId {
            key_id: cert.key_id().to_owned(),
            serial: cert.serial(),
        });
    }
    check_validity(
        cert.valid_after(),
        cert.valid_before(),
        check.now_unix,
        policy.max_clock_skew_secs,
    )?;
    check_principals(cert, check.required_principal)?;
    let force_command = check_critical_options(policy, cert, check.peer_ip)?;

    Ok(CertIdentity {
        key_id: cert.key_id().to_owned(),
        serial: cert.serial(),
        principals: cert.valid_principals().to_vec(),
        ca_fingerprint: ca,
        valid_before: cert.valid_before(),
        force_command,
        extensions: cert.extensions().keys().cloned().collect(),
    })
}

/// `valid_after <= now + skew` and `now < valid_before + skew`, without overflow;
/// `valid_before == u64::MAX` is OpenSSH's "forever".
fn check_validity(
    valid_after: u64,
    valid_before: u64,
    now: u64,
    skew_secs: u64,
) -> Result<(), CertRejection> {
    if valid_after > now.saturating_add(skew_secs) {
        return Err(CertRejection::NotYetValid {
            valid_after,
            now,
            skew_secs,
        });
    }
    if valid_before != u64::MAX && now >= valid_before.saturating_add(skew_secs) {
        return Err(CertRejection::Expired {
            valid_before,
            now,
            skew_secs,
        });
    }
    Ok(())
}

fn check_principals(cert: &Certificate, required: &str) -> Result<(), CertRejection> {
    let principals = cert.valid_principals();
    if principals.is_empty() {
        // OpenSSH treats an empty list as "any principal"; the edge never does.
        return Err(CertRejection::NoPrincipals {
            key_id: cert.key_id().to_owned(),
        });
    }
    // An empty required principal is a routing/config bug: fail closed.
    if required.is_empty() || !principals.iter().any(|p| p == required) {
        return Err(CertRejection::PrincipalMismatch {
            principals: principals.to_vec(),
            required: required.to_owned(),
        });
    }
    Ok(())
}

/// Returns the force-command to enforce, if any.
fn check_critical_options(
    policy: &CertPolicy,
    cert: &Certificate,
    peer_ip: IpAddr,
) -> Result<Option<String>, CertRejection> {
    let options = cert.critical_options();
    if let Some(value) = options.get(SOURCE_ADDRESS) {
        check_source_address(value, peer_ip)?;
    }
    let force_command = match options.get(FORCE_COMMAND) {
        None => None,
        Some(command) => match policy.force_command {
            ForceCommandPolicy::Enforce => Some(command.clone()),
            ForceCommandPolicy::Refuse => {
                return Err(CertRejection::ForceCommandRefused {
                    command: command.clone(),
                });
            }
        },
    };
    // Includes `verify-required` (FIDO user verification), which the edge cannot attest.
    if let Some(name) = options
        .keys()
        .find(|name| name.as_str() != SOURCE_ADDRESS && name.as_str() != FORCE_COMMAND)
    {
        return Err(CertRejection::UnsupportedCriticalOption { name: name.clone() });
    }
    Ok(force_command)
}

/// Peer must fall within one entry of the comma-separated address/CIDR list.
/// IPv4-mapped IPv6 peers are compared as IPv4.
fn check_source_address(value: &str, peer_ip: IpAddr) -> Result<(), CertRejection> {
    let nets = parse_source_address_list(value).map_err(|entry| {
        CertRejection::SourceAddressMalformed {
            value: value.to_owned(),
            entry,
        }
    })?;
    let peer = peer_ip.to_canonical();
    if nets.iter().any(|net| net.contains(&peer)) {
        Ok(())
    } else {
        Err(CertRejection::SourceAddressMismatch {
            peer,
            allowed: value.to_owned(),
        })
    }
}

/// Parses the whole list; any bad entry (including an empty one) makes it malformed.
/// Returns the offending entry on error.
fn parse_source_address_list(value: &str) -> Result<Vec<IpNet>, String> {
    value
        .split(',')
        .map(|raw| {
            let entry = raw.trim();
            let parsed = if entry.contains('/') {
                entry.parse::<IpNet>().ok()
            } else {
                entry.parse::<IpAddr>().ok().map(IpNet::from)
            };
            parsed.ok_or_else(|| raw.to_owned())
        })
        .collect()
}

/// Why a configured CA entry could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CaEntryError {
    #[error("empty CA entry")]
    Empty,
    #[error("invalid CA fingerprint {}: {reason}", quoted(.entry))]
    BadFingerprint { entry: String, reason: String },
    #[error("invalid CA public key line {}: {reason}", quoted(.entry))]
    BadPublicKey { entry: String, reason: String },
}

/// Parse a CA entry from config: either an OpenSSH public key line
/// (`"ssh-ed25519 AAAA… comment"`) or a fingerprint (`"SHA256:…"`, `"SHA512:…"` also accepted).
/// Key lines yield their SHA-256 fingerprint.
///
/// # Errors
/// [`CaEntryError`] when the entry is empty or neither a valid fingerprint nor a valid key line.
pub(crate) fn parse_ca_entry(entry: &str) -> Result<Fingerprint, CaEntryError> {
    let entry = entry.trim();
    if entry.is_empty() {
        return Err(CaEntryError::Empty);
    }
    if entry.starts_with("SHA256:") || entry.starts_with("SHA512:") {
        return entry
            .parse::<Fingerprint>()
            .map_err(|e| CaEntryError::BadFingerprint {
                entry: entry.to_owned(),
                reason: e.to_string(),
            });
    }
    PublicKey::from_openssh(entry)
        .map(|key| key.fingerprint(HashAlg::Sha256))
        .map_err(|e| CaEntryError::BadPublicKey {
            entry: entry.to_owned(),
            reason: e.to_string(),
        })
}

/// Quoted, escaped, capped rendering of a certificate-controlled string for a log line.
fn quoted(s: &str) -> String {
    quote_untrusted(s, MAX_LOGGED_CHARS)
}

fn principal_list(principals: &[String]) -> String {
    quote_untrusted_list(principals, MAX_LOGGED_PRINCIPALS, MAX_LOGGED_CHARS)
}

#[cfg(test)]
#[path = "cert_policy_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "cert_policy_tests_options.rs"]
mod tests_options;
