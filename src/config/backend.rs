//! `[backend]` as validated: how the edge logs in to backends, how their host keys are
//! verified (known_hosts, pinned keys, host CAs) and upstream multiplexing.

use std::time::Duration;

use super::{
    BackendLogin, BackendSettings, HostKeyPolicy, MultiplexSettings, RawBackend, load_private_key,
};
use crate::auth::cert_policy::parse_ca_entry;

pub(super) fn validate_backend(
    raw: &RawBackend,
    dns: crate::route::dns::DnsSettings,
    problems: &mut Vec<String>,
) -> Option<BackendSettings> {
    let login = match (&raw.edge_ca_key_file, &raw.identity_file) {
        (Some(ca), None) => load_private_key("backend.edge_ca_key_file", ca, problems).map(|ca| {
            BackendLogin::EdgeCa {
                ca,
                validity: Duration::from_secs(raw.cert_validity_secs.max(30)),
            }
        }),
        (None, Some(id)) => {
            load_private_key("backend.identity_file", id, problems).map(BackendLogin::Key)
        }
        (Some(_), Some(_)) => {
            problems
                .push("backend: set one of edge_ca_key_file and identity_file, not both".into());
            None
        }
        (None, None) => {
            problems.push("backend: set edge_ca_key_file (recommended) or identity_file for logging in to backends".into());
            None
        }
    };
    let mut pinned = Vec::new();
    for (i, entry) in raw.host_keys.iter().enumerate() {
        match parse_ca_entry(entry) {
            Ok(fp) => pinned.push(fp),
            Err(e) => problems.push(format!("backend.host_keys[{i}]: {e}")),
        }
    }
    let mut host_cas = Vec::new();
    for (i, entry) in raw.host_cas.iter().enumerate() {
        match parse_ca_entry(entry) {
            Ok(fingerprint) => host_cas.push(crate::auth::host_ca::HostCa {
                patterns: None,
                fingerprint,
            }),
            Err(e) => problems.push(format!("backend.host_cas[{i}]: {e}")),
        }
    }
    let mut revoked = Vec::new();
    if let Some(path) = &raw.known_hosts_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let (markers, bad) = crate::auth::host_ca::parse_markers(&text);
                problems.extend(
                    bad.into_iter()
                        .map(|b| format!("backend.known_hosts_file {}: {b}", path.display())),
                );
                host_cas.extend(markers.cert_authorities);
                revoked = markers.revoked;
            }
            Err(e) => problems.push(format!(
                "backend.known_hosts_file {}: not a readable file ({e})",
                path.display()
            )),
        }
    }
    if raw.known_hosts_file.is_none()
        && pinned.is_empty()
        && host_cas.is_empty()
        && !raw.accept_any_host_key
    {
        problems.push(
            "backend: no way to verify backend host keys; set known_hosts_file, host_cas or host_keys (or, insecurely, accept_any_host_key = true)".into(),
        );
    }
    if raw.connect_timeout_secs == 0 {
        problems.push("backend.connect_timeout_secs: must be at least 1".into());
    }
    if raw.multiplex && raw.multiplex_max_clients == 0 {
        problems.push("backend.multiplex_max_clients: must be at least 1".into());
    }
    Some(BackendSettings {
        connect_timeout: Duration::from_secs(raw.connect_timeout_secs),
        login: login?,
        host_keys: HostKeyPolicy {
            known_hosts_file: raw.known_hosts_file.clone(),
            pinned,
            host_cas,
            revoked,
            accept_any: raw.accept_any_host_key,
        },
        multiplex: raw.multiplex.then(|| MultiplexSettings {
            idle: Duration::from_secs(raw.multiplex_idle_secs),
            max_clients: raw.multiplex_max_clients,
        }),
        dns,
    })
}
