//! `listen.proxy_*`, `listen.backlog`, `[limits]` and `[admin]`: the settings of the public
//! door, validated into [`AdmissionSettings`], plus the warnings `check-config` prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::admission::AdmissionSettings;
use crate::admission::limits::LimitSettings;
use crate::admission::proxy::ProxyMode;

/// Pre-authentication limits (see `admission::limits`). 0 turns a limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLimits {
    /// Unauthenticated connections before random early drop starts (OpenSSH MaxStartups
    /// "start").
    pub preauth_start: usize,
    /// Drop probability at `preauth_start`, percent; rises linearly to 100 at `preauth_full`.
    pub preauth_drop_percent: u8,
    /// Unauthenticated connections at which every new one is dropped.
    pub preauth_full: usize,
    /// Unauthenticated connections per source address (OpenSSH PerSourceMaxStartups).
    pub per_source_max: usize,
    /// New connections per second per source address, sustained.
    pub per_source_rate: f64,
    /// Connections a source may open in one burst.
    pub per_source_burst: f64,
    /// IPv4 network block counted as one source (OpenSSH PerSourceNetBlockSize).
    pub ipv4_prefix: u8,
    /// IPv6 network block counted as one source.
    pub ipv6_prefix: u8,
}

impl Default for RawLimits {
    fn default() -> Self {
        let d = LimitSettings::default();
        Self {
            preauth_start: d.start,
            preauth_drop_percent: d.drop_percent,
            preauth_full: d.full,
            per_source_max: d.per_source_max,
            per_source_rate: d.per_source_rate,
            per_source_burst: d.per_source_burst,
            ipv4_prefix: d.ipv4_prefix,
            ipv6_prefix: d.ipv6_prefix,
        }
    }
}

/// The admin endpoint (`listen.admin`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAdmin {
    /// File holding a bearer token required on every admin path but /healthz and /readyz.
    pub bearer_token_file: Option<PathBuf>,
}

/// Validates the door's settings, adding every problem to `problems`.
pub(super) fn validate_admission(
    listen: &super::RawListen,
    limits: &RawLimits,
    login_grace_secs: u64,
    problems: &mut Vec<String>,
) -> AdmissionSettings {
    let proxy_mode = ProxyMode::parse(&listen.proxy_protocol).unwrap_or_else(|| {
        problems.push(format!(
            "listen.proxy_protocol: \"{}\" is not one of \"off\", \"v1\", \"v2\", \"any\"",
            listen.proxy_protocol
        ));
        ProxyMode::Off
    });
    let mut proxy_trusted = Vec::new();
    for (i, entry) in listen.proxy_trusted_cidrs.iter().enumerate() {
        match parse_cidr(entry) {
            Some(net) => proxy_trusted.push(net),
            None => problems.push(format!(
                "listen.proxy_trusted_cidrs[{i}]: \"{entry}\" is not a CIDR like 10.0.0.0/8 or an address"
            )),
        }
    }
    if proxy_mode != ProxyMode::Off && listen.proxy_trusted_cidrs.is_empty() {
        problems.push(
            "listen.proxy_trusted_cidrs: required when listen.proxy_protocol is on (the load balancers' addresses)".into(),
        );
    }
    if limits.preauth_full < limits.preauth_start {
        problems.push(format!(
            "limits.preauth_full: {} is below limits.preauth_start {}",
            limits.preauth_full, limits.preauth_start
        ));
    }
    if limits.preauth_drop_percent > 100 {
        problems.push(format!(
            "limits.preauth_drop_percent: {} is over 100",
            limits.preauth_drop_percent
        ));
    }
    if !limits.per_source_rate.is_finite() || limits.per_source_rate < 0.0 {
        problems.push("limits.per_source_rate: must be a number ≥ 0".into());
    }
    if limits.per_source_rate > 0.0
        && (!limits.per_source_burst.is_finite() || limits.per_source_burst < 1.0)
    {
        problems
            .push("limits.per_source_burst: must be at least 1 when per_source_rate is set".into());
    }
    if limits.ipv4_prefix > 32 || limits.ipv6_prefix > 128 {
        problems.push("limits.ipv4_prefix / ipv6_prefix: at most 32 / 128".into());
    }
    AdmissionSettings {
        proxy_mode,
        proxy_trusted,
        limits: LimitSettings {
            start: limits.preauth_start,
            drop_percent: limits.preauth_drop_percent.min(100),
            full: limits.preauth_full,
            per_source_max: limits.per_source_max,
            per_source_rate: limits.per_source_rate.max(0.0),
            per_source_burst: limits.per_source_burst.max(1.0),
            ipv4_prefix: limits.ipv4_prefix.min(32),
            ipv6_prefix: limits.ipv6_prefix.min(128),
        },
        login_grace: Duration::from_secs(login_grace_secs.max(1)),
    }
}

/// A CIDR, or a bare address as its /32 or /128.
fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Reads the admin bearer token: the file's first line, which must not be empty.
pub(super) fn load_admin_token(admin: &RawAdmin, problems: &mut Vec<String>) -> Option<String> {
    let path = admin.bearer_token_file.as_ref()?;
    match super::read_token_file(path) {
        Ok(token) => {
            if token.len() < 16 {
                problems.push(format!(
                    "admin.bearer_token_file {}: the token must be at least 16 characters",
                    path.display()
                ));
                return None;
            }
            Some(token)
        }
        Err(e) => {
            problems.push(format!("admin.bearer_token_file {}: {e}", path.display()));
            None
        }
    }
}

/// Things that work but deserve a word, for `check-config` and the start-up log.
pub fn warnings(raw: &super::RawConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(admin) = raw.listen.admin.as_deref()
        && let Ok(addr) = admin.parse::<SocketAddr>()
        && !addr.ip().is_loopback()
        && raw.admin.bearer_token_file.is_none()
    {
        warnings.push(format!(
            "listen.admin {admin} is not loopback and admin.bearer_token_file is not set: anyone who reaches it can read /metrics"
        ));
    }
    let dns_worst = raw.dns.timeout_ms.saturating_mul(raw.dns.attempts as u64);
    if dns_worst >= raw.backend.connect_timeout_secs.saturating_mul(1000) {
        warnings.push(format!(
            "dns: timeout_ms × attempts ({dns_worst} ms) is not below backend.connect_timeout_secs ({} s): during a DNS outage logins time out before the last known answer is used",
            raw.backend.connect_timeout_secs
        ));
    }
    if raw.limits.preauth_full == 0 && raw.limits.per_source_max == 0 {
        warnings.push(
            "limits: no cap on unauthenticated connections (limits.preauth_full and per_source_max are 0)".into(),
        );
    }
    warnings
}
