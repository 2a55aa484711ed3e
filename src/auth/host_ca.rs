//! Backend host certificates (pure): which host CAs vouch for which backend names, OpenSSH's
//! host patterns, and the checks on a presented certificate.
//!
//! Host CAs come from `backend.host_cas` (any backend) and from `@cert-authority <patterns>
//! <key>` lines of the known_hosts file; `@revoked` lines name keys (or CAs) never to accept.
//! Patterns follow known_hosts: comma-separated, `*` and `?` wildcards, `!` negates. A pattern
//! is matched against the bare host name and against `[host]:port`, so `*.training.svc` covers
//! every port of those hosts.

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::{Certificate, Fingerprint, HashAlg, PublicKey};

/// One trusted host CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCa {
    /// known_hosts patterns the CA may vouch for; `None`: any backend.
    pub patterns: Option<String>,
    pub fingerprint: Fingerprint,
}

/// What a known_hosts file says beyond plain keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KnownHostsMarkers {
    pub cert_authorities: Vec<HostCa>,
    pub revoked: Vec<Fingerprint>,
}

/// Reads `@cert-authority` and `@revoked` lines; everything else is left to the plain-key
/// check. Lines that do not parse are returned as problems (line numbers from 1).
pub(crate) fn parse_markers(text: &str) -> (KnownHostsMarkers, Vec<String>) {
    let mut markers = KnownHostsMarkers::default();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        let Some(marker) = line.strip_prefix('@') else {
            continue;
        };
        let mut fields = line.split_whitespace();
        let (Some(_), Some(patterns), Some(algorithm), Some(base64)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            problems.push(format!(
                "line {}: expected @{} <patterns> <key type> <base64 key>",
                i + 1,
                marker.split_whitespace().next().unwrap_or("")
            ));
            continue;
        };
        let key = match PublicKey::from_openssh(&format!("{algorithm} {base64}")) {
            Ok(k) => k,
            Err(e) => {
                problems.push(format!("line {}: not a public key ({e})", i + 1));
                continue;
            }
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        if marker.starts_with("cert-authority") {
            markers.cert_authorities.push(HostCa {
                patterns: Some(patterns.to_string()),
                fingerprint,
            });
        } else if marker.starts_with("revoked") {
            markers.revoked.push(fingerprint);
        } else {
            problems.push(format!(
                "line {}: unknown marker @{}; expected @cert-authority or @revoked",
                i + 1,
                marker.split_whitespace().next().unwrap_or("")
            ));
        }
    }
    (markers, problems)
}

/// Glob match with `*` (any run) and `?` (one character), case-insensitive.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p].eq_ignore_ascii_case(&name[n])) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some(p);
            mark = n;
            p += 1;
        } else if let Some(s) = star {
            p = s + 1;
            mark += 1;
            n = mark;
        } else {
            return false;
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Whether a comma-separated known_hosts pattern list matches `name`: some positive pattern
/// matches and no negated one does.
pub(crate) fn pattern_list_matches(list: &str, name: &str) -> bool {
    let mut matched = false;
    for pattern in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
    matched
}

impl HostCa {
    /// Whether this CA may vouch for `host` on `port`.
    pub(crate) fn covers(&self, host: &str, port: u16) -> bool {
        match &self.patterns {
            None => true,
            Some(list) => {
                pattern_list_matches(list, host)
                    || pattern_list_matches(list, &format!("[{host}]:{port}"))
            }
        }
    }
}

/// Checks a backend's host certificate: a trusted CA for this host signed it (signature
/// verified), it is a host certificate, it is valid now, it names `host` among its
/// principals, and neither it nor its CA is revoked. `Err` says what was wrong.
pub(crate) fn check_host_certificate(
    cert: &Certificate,
    host: &str,
    port: u16,
    cas: &[HostCa],
    revoked: &[Fingerprint],
    now_unix: u64,
) -> Result<(), String> {
    let ca = cert.signature_key().fingerprint(HashAlg::Sha256);
    let key = cert.public_key().fingerprint(HashAlg::Sha256);
    if revoked.contains(&ca) || revoked.contains(&key) {
        return Err(format!(
            "host certificate key {key} or its CA {ca} is marked @revoked"
        ));
    }
    let trusted: Vec<Fingerprint> = cas
        .iter()
        .filter(|c| c.covers(host, port))
        .map(|c| c.fingerprint)
        .collect();
    if !trusted.contains(&ca) {
        return Err(format!(
            "host certificate signed by CA {ca}, which is not a trusted host CA for {host} (backend.host_cas, @cert-authority in known_hosts)"
        ));
    }
    if cert.cert_type() != CertType::Host {
        return Err(format!(
            "certificate {:?} is a user certificate, not a host certificate",
            cert.key_id()
        ));
    }
    cert.validate_at(now_unix, &trusted).map_err(|e| {
        format!(
            "host certificate {:?} is not valid now (signature or validity window): {e}",
            cert.key_id()
        )
    })?;
    let principals = cert.valid_principals();
    if !principals.iter().any(|p| p.eq_ignore_ascii_case(host)) {
        return Err(format!(
            "host certificate {:?} is for [{}], not {host}",
            cert.key_id(),
            principals.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_follow_known_hosts() {
        assert!(pattern_list_matches("*.training.svc", "job-0.training.svc"));
        assert!(pattern_list_matches("*.Training.SVC", "job-0.training.svc"));
        assert!(!pattern_list_matches("*.training.svc", "training.svc"));
        assert!(pattern_list_matches(
            "job-?.training.svc",
            "job-7.training.svc"
        ));
        assert!(!pattern_list_matches(
            "job-?.training.svc",
            "job-17.training.svc"
        ));
        assert!(pattern_list_matches("a.example,*.svc", "x.svc"));
        assert!(!pattern_list_matches("*.svc,!evil.svc", "evil.svc"));
        assert!(pattern_list_matches("*.svc,!evil.svc", "good.svc"));
        assert!(
            !pattern_list_matches("!evil.svc", "good.svc"),
            "only negations match nothing"
        );
        assert!(pattern_list_matches("[*.svc]:2222", "[job.svc]:2222"));
        assert!(pattern_list_matches("*", ""));
        assert!(!pattern_list_matches("", "x"));
    }

    #[test]
    fn cas_cover_names_with_or_without_port() {
        let fp = PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJNR+nyFWLWgwylRf4ZNBW8/jezyOIouTeVHb1/18xSn",
        )
        .unwrap()
        .fingerprint(HashAlg::Sha256);
        let ca = HostCa {
            patterns: Some("*.training.svc".into()),
            fingerprint: fp,
        };
        assert!(ca.covers("job-0.training.svc", 2222));
        assert!(!ca.covers("job-0.models.svc", 2222));
        let any = HostCa {
            patterns: None,
            fingerprint: fp,
        };
        assert!(any.covers("anything", 22));
    }

    #[test]
    fn markers_are_read_and_bad_lines_reported() {
        let text = "# comment\n\
            [10.0.0.1]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJNR+nyFWLWgwylRf4ZNBW8/jezyOIouTeVHb1/18xSn\n\
            @cert-authority *.training.svc ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJNR+nyFWLWgwylRf4ZNBW8/jezyOIouTeVHb1/18xSn ca\n\
            @revoked * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJNR+nyFWLWgwylRf4ZNBW8/jezyOIouTeVHb1/18xSn\n\
            @cert-authority *.x\n\
            @bogus * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJNR+nyFWLWgwylRf4ZNBW8/jezyOIouTeVHb1/18xSn\n";
        let (markers, problems) = parse_markers(text);
        assert_eq!(markers.cert_authorities.len(), 1);
        assert_eq!(
            markers.cert_authorities[0].patterns.as_deref(),
            Some("*.training.svc")
        );
        assert_eq!(markers.revoked.len(), 1);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("line 5:"), "{problems:?}");
        assert!(
            problems[1].contains("unknown marker @bogus"),
            "{problems:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn glob_never_panics(p in "[a-z*?.!,\\[\\]:0-9]{0,20}", n in "[a-z.\\[\\]:0-9]{0,30}") {
            let _ = pattern_list_matches(&p, &n);
        }
    }
}
