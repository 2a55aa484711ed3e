//! `[dns]`: how backend names are resolved (see `route::dns`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::route::dns::DnsSettings;
use crate::route::dns_cache::CacheSettings;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawDns {
    /// DNS servers as "ip" or "ip:port"; empty = the system's (/etc/resolv.conf).
    pub nameservers: Vec<String>,
    /// Per-query timeout, milliseconds.
    pub timeout_ms: u64,
    /// Tries per lookup.
    pub attempts: usize,
    /// Longest a positive answer is used before asking again, whatever its TTL says.
    pub max_ttl_secs: u64,
    /// How long "no such name" (NXDOMAIN) is remembered.
    pub negative_ttl_secs: u64,
    /// How long past its TTL an answer may still be used while DNS fails.
    pub stale_secs: u64,
    /// Backend names cached at most.
    pub cache_capacity: usize,
}

impl Default for RawDns {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout_ms: 2000,
            attempts: 2,
            max_ttl_secs: 30,
            negative_ttl_secs: 5,
            stale_secs: 300,
            cache_capacity: 100_000,
        }
    }
}

pub(super) fn validate_dns(raw: &RawDns, problems: &mut Vec<String>) -> DnsSettings {
    let mut nameservers = Vec::new();
    for (i, ns) in raw.nameservers.iter().enumerate() {
        let parsed = ns.parse::<SocketAddr>().or_else(|_| {
            ns.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match parsed {
            Ok(a) => nameservers.push(a),
            Err(_) => problems.push(format!(
                "dns.nameservers[{i}]: \"{ns}\" is not an address like 10.96.0.10 or 127.0.0.1:5353"
            )),
        }
    }
    if raw.timeout_ms == 0 {
        problems.push("dns.timeout_ms: must be at least 1".into());
    }
    if raw.attempts == 0 {
        problems.push("dns.attempts: must be at least 1".into());
    }
    if raw.cache_capacity == 0 {
        problems.push("dns.cache_capacity: must be at least 1".into());
    }
    DnsSettings {
        nameservers,
        timeout: Duration::from_millis(raw.timeout_ms.max(1)),
        attempts: raw.attempts.max(1),
        cache: CacheSettings {
            max_ttl: Duration::from_secs(raw.max_ttl_secs),
            negative_ttl: Duration::from_secs(raw.negative_ttl_secs),
            stale_for: Duration::from_secs(raw.stale_secs),
            capacity: raw.cache_capacity.max(1),
        },
    }
}
