//! Backend host-key verification: pinned keys, a known_hosts file, or (loudly) anything.

use std::sync::{Arc, Mutex};

use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::HashAlg;

use crate::auth::host_ca::check_host_certificate;
use crate::config::HostKeyPolicy;

/// Checks one backend's host key and remembers why it was refused, so the user's error
/// message can say "host key rejected: …" instead of a generic handshake failure.
pub(crate) struct BackendKeyCheck {
    policy: HostKeyPolicy,
    host: String,
    port: u16,
    verdict: Arc<Mutex<Option<String>>>,
}

impl BackendKeyCheck {
    /// `host` is the name (or address) the connection went to, without the port.
    pub(crate) fn new(policy: HostKeyPolicy, host: &str, port: u16) -> Self {
        let host = host.to_string();
        Self {
            policy,
            host,
            port,
            verdict: Arc::new(Mutex::new(None)),
        }
    }

    /// Shared slot holding the refusal reason, if any.
    pub(crate) fn verdict(&self) -> Arc<Mutex<Option<String>>> {
        self.verdict.clone()
    }

    pub(crate) fn check(&self, presented: &PublicKeyOrCertificate) -> bool {
        let key = match presented {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            PublicKeyOrCertificate::Certificate(cert) => {
                let now = crate::time::unix_now();
                return match check_host_certificate(
                    cert,
                    &self.host,
                    self.port,
                    &self.policy.host_cas,
                    &self.policy.revoked,
                    now,
                ) {
                    Ok(()) => true,
                    Err(reason) => self.refuse(reason),
                };
            }
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        if self.policy.revoked.contains(&fingerprint) {
            return self.refuse(format!(
                "key {fingerprint} is marked @revoked in known_hosts"
            ));
        }
        if self.policy.pinned.contains(&fingerprint) {
            return true;
        }
        if let Some(path) = &self.policy.known_hosts_file {
            match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(russh::keys::Error::KeyChanged { line }) => {
                    if self.policy.accept_any {
                        tracing::warn!(backend = %self.host, port = self.port, %fingerprint, line,
                            "INSECURE: backend host key differs from known_hosts, accepted because accept_any_host_key = true");
                        return true;
                    }
                    return self.refuse(format!(
                        "key {fingerprint} differs from the one recorded in {} line {line}",
                        path.display()
                    ));
                }
                Err(e) => {
                    if !self.policy.accept_any {
                        return self
                            .refuse(format!("cannot read known_hosts {}: {e}", path.display()));
                    }
                }
            }
        }
        if self.policy.accept_any {
            tracing::warn!(backend = %self.host, port = self.port, %fingerprint,
                "INSECURE: backend host key not verified (accept_any_host_key = true)");
            return true;
        }
        self.refuse(format!(
            "key {fingerprint} is not pinned and not in known_hosts for [{}]:{}",
            self.host, self.port
        ))
    }

    fn refuse(&self, reason: String) -> bool {
        if let Ok(mut slot) = self.verdict.lock() {
            *slot = Some(reason);
        }
        false
    }
}
