//! `[control_plane]`: where the edge asks whether a workload is running, wakes sleeping ones,
//! and reads their session expiry (see `control_plane`). Off unless `url` is set.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control_plane::{ControlPlaneSettings, OnUnavailable};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawControlPlane {
    /// Base URL, `http://` or `https://`; unset = no control plane (every workload is running).
    pub url: Option<String>,
    /// File whose first line is the bearer token the edge presents.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle for an HTTPS control plane with a private CA (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// How long an answer about a workload is reused.
    pub cache_ttl_secs: u64,
    /// Time for one request, connection included.
    pub timeout_ms: u64,
    /// What to do with a login when the control plane does not answer: "allow" or "deny".
    pub on_unavailable: String,
    /// Longest a login waits for a waking workload's backend to accept connections.
    pub activation_timeout_secs: u64,
    /// How often an open session re-reads its workload's session expiry.
    pub expiry_refresh_secs: u64,
    /// Front B: longest the status byte is held while a workload wakes (the installed helpers
    /// give up after 10 s); then `0x01`, while the wake-up goes on for the next try.
    pub token_hold_secs: u64,
}

impl Default for RawControlPlane {
    fn default() -> Self {
        Self {
            url: None,
            token_file: None,
            ca_file: None,
            cache_ttl_secs: 5,
            timeout_ms: 2000,
            on_unavailable: "allow".into(),
            activation_timeout_secs: 300,
            expiry_refresh_secs: 30,
            token_hold_secs: 8,
        }
    }
}

pub(super) fn validate_control_plane(
    raw: &RawControlPlane,
    problems: &mut Vec<String>,
) -> Option<ControlPlaneSettings> {
    let on_unavailable = match raw.on_unavailable.as_str() {
        "allow" => OnUnavailable::Allow,
        "deny" => OnUnavailable::Deny,
        other => {
            problems.push(format!(
                "control_plane.on_unavailable: \"{other}\" is not \"allow\" or \"deny\""
            ));
            OnUnavailable::Allow
        }
    };
    // An empty url turns the control plane off (SSH_EDGE_CONTROL_PLANE__URL= does that over
    // a file that sets it).
    let url = raw
        .url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())?;
    let parsed = url.parse::<hyper::Uri>();
    // Request paths are appended to it: a query, or a fragment (which `Uri` drops without a
    // word), would swallow them.
    let url_ok = matches!(&parsed, Ok(u) if matches!(u.scheme_str(), Some("http" | "https"))
    && u.query().is_none()
    && !url.contains('#')
    && u.authority().is_some_and(|a| {
        !a.host().is_empty() && crate::uri::explicit_port(a).is_ok()
    }));
    if !url_ok {
        problems.push(format!(
            "control_plane.url: \"{url}\" is not an http:// or https:// URL like https://control-plane.internal:8443"
        ));
    }
    let token = match &raw.token_file {
        None => None,
        Some(path) => match super::read_token_file(path) {
            Ok(token) => {
                if token.is_empty() {
                    problems.push(format!(
                        "control_plane.token_file {}: empty, expected the bearer token on the first line",
                        path.display()
                    ));
                }
                Some(token)
            }
            Err(e) => {
                problems.push(format!("control_plane.token_file {}: {e}", path.display()));
                None
            }
        },
    };
    if let Some(ca) = &raw.ca_file
        && let Err(e) = crate::connect::roots(Some(ca))
    {
        problems.push(format!("control_plane.ca_file {}: {e}", ca.display()));
    }
    for (field, value) in [
        ("timeout_ms", raw.timeout_ms),
        ("activation_timeout_secs", raw.activation_timeout_secs),
        ("expiry_refresh_secs", raw.expiry_refresh_secs),
    ] {
        if value == 0 {
            problems.push(format!("control_plane.{field}: must be at least 1"));
        }
    }
    if raw.token_hold_secs > 9 {
        problems.push(format!(
            "control_plane.token_hold_secs: {} is not between 0 and 9 (the installed helpers give up after 10 s)",
            raw.token_hold_secs
        ));
    }
    Some(ControlPlaneSettings {
        url: url.trim_end_matches('/').to_string(),
        token,
        ca_file: raw.ca_file.clone(),
        cache_ttl: Duration::from_secs(raw.cache_ttl_secs),
        timeout: Duration::from_millis(raw.timeout_ms.max(1)),
        on_unavailable,
        activation_timeout: Duration::from_secs(raw.activation_timeout_secs.max(1)),
        expiry_refresh: Duration::from_secs(raw.expiry_refresh_secs.max(1)),
        token_hold: Duration::from_secs(raw.token_hold_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_a_scheme_a_host_and_a_real_port() {
        for (url, ok) in [
            ("https://control-plane.internal:8443", true),
            ("http://127.0.0.1:8080/base/", true),
            ("https://[::1]", true),
            ("control-plane.internal:8443", false),
            ("ftp://control-plane.internal", false),
            ("https://:8443", false),
            // hyper's Uri keeps these and its connector would quietly use port 443.
            ("https://control-plane.internal:99999", false),
            ("https://control-plane.internal:", false),
            ("https://control-plane.internal:0", false),
            ("https://control-plane.internal/?tenant=a", false),
            ("https://control-plane.internal/#v1", false),
        ] {
            let raw = RawControlPlane {
                url: Some(url.into()),
                ..RawControlPlane::default()
            };
            let mut problems = Vec::new();
            validate_control_plane(&raw, &mut problems);
            let refused = problems.iter().any(|p| p.starts_with("control_plane.url:"));
            assert_eq!(refused, !ok, "{url}: {problems:?}");
        }
    }
}
