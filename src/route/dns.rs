//! Backend addresses → socket addresses, through DNS with hickory-resolver.
//!
//! A route's `backend` is one of:
//! - `10.0.0.5:2222` / `[fd00::5]:2222`: used as is;
//! - `job-0.training.svc.cluster.local:2222`: A/AAAA lookup, the port from the route;
//! - `srv:_ssh._tcp.job-0.training.svc.cluster.local`: SRV lookup, host and port from each
//!   record (lowest priority first, then highest weight), then A/AAAA for each target.
//!
//! One resolver per configuration generation, with hickory's own cache off: the edge's
//! [`DnsCache`] honours TTLs (capped), remembers NXDOMAIN briefly, serves a stale answer when
//! DNS fails, and lets one lookup per name be in flight (concurrent logins for the same
//! workload share it).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use hyper::http::uri::Authority;

use super::dns_cache::{CacheSettings, Cached, DnsCache};
use crate::metrics::Metrics;

/// One place to connect to: the name it was found under (what the backend's host key or host
/// certificate must be for) and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub host: String,
    pub port: u16,
    pub addr: SocketAddr,
}

/// A route's backend address, parsed (pure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BackendAddr {
    Socket(SocketAddr),
    Host { host: String, port: u16 },
    Srv(String),
}

/// Why a backend name gave no address. Messages name the backend and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("no such workload: backend {name} is not in DNS")]
    NotFound { name: String },
    #[error("cannot resolve backend {name}: {reason}")]
    Failed { name: String, reason: String },
    #[error("invalid backend address \"{addr}\": expected host:port, [v6]:port or srv:<name>")]
    Invalid { addr: String },
}

impl BackendAddr {
    pub(crate) fn parse(addr: &str) -> Result<Self, ResolveError> {
        let invalid = || ResolveError::Invalid {
            addr: addr.to_string(),
        };
        if let Some(name) = addr.strip_prefix("srv:") {
            let name = name.trim_end_matches('.');
            if name.is_empty() || name.contains(':') {
                return Err(invalid());
            }
            return Ok(Self::Srv(name.to_string()));
        }
        if let Ok(sock) = addr.parse::<SocketAddr>() {
            return Ok(Self::Socket(sock));
        }
        // A name and a port (a backend has no default port); IP literals were taken above.
        let authority: Authority = addr.parse().map_err(|_| invalid())?;
        let Ok(Some(port)) = crate::uri::explicit_port(&authority) else {
            return Err(invalid());
        };
        let host = authority.host().trim_end_matches('.');
        if host.is_empty() || host.starts_with('[') || authority.as_str().contains('@') {
            return Err(invalid());
        }
        Ok(Self::Host {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// `[dns]` as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Empty: the system's (/etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
    pub timeout: Duration,
    pub attempts: usize,
    pub cache: CacheSettings,
}

type Answer = Result<(Vec<Endpoint>, Duration), ResolveError>;

/// The resolver of one configuration generation.
pub(crate) struct BackendResolver {
    resolver: Result<TokioResolver, String>,
    cache: Mutex<DnsCache<Vec<Endpoint>>>,
    inflight: Mutex<HashMap<String, Shared<BoxFuture<'static, Answer>>>>,
    metrics: Arc<Metrics>,
}

/// A hickory resolver builder for `nameservers` (UDP and TCP, each on its own port), or for
/// the system's `/etc/resolv.conf` when the list is empty. Shared with `ssh-edge sessions`.
pub(crate) fn resolver_builder(
    nameservers: &[SocketAddr],
) -> Result<hickory_resolver::ResolverBuilder<TokioRuntimeProvider>, String> {
    if nameservers.is_empty() {
        return TokioResolver::builder_tokio()
            .map_err(|e| format!("reading /etc/resolv.conf: {e}"));
    }
    let servers = nameservers
        .iter()
        .map(|ns| {
            let mut server = NameServerConfig::udp_and_tcp(ns.ip());
            for c in &mut server.connections {
                c.port = ns.port();
            }
            server
        })
        .collect();
    Ok(Resolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    ))
}

fn build_resolver(settings: &DnsSettings) -> Result<TokioResolver, String> {
    let mut builder = resolver_builder(&settings.nameservers)?;
    let options = builder.options_mut();
    options.timeout = settings.timeout;
    options.attempts = settings.attempts;
    // One cache, the edge's (TTL cap, negative cache, stale answers on failure).
    options.cache_size = 0;
    builder.build().map_err(|e| e.to_string())
}

impl BackendResolver {
    pub(crate) fn new(settings: &DnsSettings, metrics: Arc<Metrics>) -> Self {
        let resolver = build_resolver(settings);
        if let Err(e) = &resolver {
            tracing::error!(error = %e, "no DNS resolver: backend names will not resolve");
        }
        Self {
            resolver,
            cache: Mutex::new(DnsCache::new(settings.cache)),
            inflight: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    fn count(&self, outcome: &str) {
        self.metrics.dns_lookups.with_label_values(&[outcome]).inc();
    }

    /// The places `backend` names, in the order to try them.
    pub(crate) async fn resolve(&self, backend: &str) -> Result<Vec<Endpoint>, ResolveError> {
        let parsed = BackendAddr::parse(backend)?;
        if let BackendAddr::Socket(addr) = parsed {
            return Ok(vec![Endpoint {
                host: addr.ip().to_string(),
                port: addr.port(),
                addr,
            }]);
        }
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(backend, Instant::now());
        let stale = match cached {
            Cached::Fresh(endpoints) => {
                self.count("cached");
                return Ok(endpoints);
            }
            Cached::Missing => {
                self.count("negative_cached");
                return Err(ResolveError::NotFound {
                    name: name_of(&parsed),
                });
            }
            Cached::Stale(endpoints) => Some(endpoints),
            Cached::Unknown => None,
        };
        let answer = self.query_once(backend, parsed).await;
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match answer {
            Ok((endpoints, ttl)) => {
                cache.put(backend, endpoints.clone(), ttl, Instant::now());
                self.count("resolved");
                Ok(endpoints)
            }
            Err(e @ ResolveError::NotFound { .. }) => {
                cache.put_missing(backend, Instant::now());
                self.count("nxdomain");
                Err(e)
            }
            Err(e) => match stale {
                Some(endpoints) => {
                    tracing::warn!(backend, error = %e, "DNS failed; using the last answer");
                    self.count("stale");
                    Ok(endpoints)
                }
                None => {
                    self.count("error");
                    Err(e)
                }
            },
        }
    }

    /// Asks DNS, sharing one query among concurrent callers for the same backend.
    async fn query_once(&self, backend: &str, parsed: BackendAddr) -> Answer {
        let resolver = match &self.resolver {
            Ok(r) => r.clone(),
            Err(e) => {
                return Err(ResolveError::Failed {
                    name: name_of(&parsed),
                    reason: e.clone(),
                });
            }
        };
        let shared = {
            let mut inflight = self
                .inflight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            inflight
                .entry(backend.to_string())
                .or_insert_with(|| {
                    let histogram = self.metrics.dns_lookup_seconds.clone();
                    async move {
                        let started = Instant::now();
                        let answer = query(&resolver, &parsed).await;
                        histogram.observe(started.elapsed().as_secs_f64());
                        answer
                    }
                    .boxed()
                    .shared()
                })
                .clone()
        };
        let answer = shared.await;
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(backend);
        answer
    }
}

fn name_of(parsed: &BackendAddr) -> String {
    match parsed {
        BackendAddr::Socket(a) => a.to_string(),
        BackendAddr::Host { host, .. } => host.clone(),
        BackendAddr::Srv(name) => name.clone(),
    }
}

fn fqdn(name: &str) -> String {
    // Names are absolute: no search-domain walk for a cluster name.
    format!("{name}.")
}

fn remaining(valid_until: Instant) -> Duration {
    valid_until.saturating_duration_since(Instant::now())
}

fn failed(name: &str, e: &hickory_resolver::net::NetError) -> ResolveError {
    if e.is_nx_domain() || e.is_no_records_found() {
        ResolveError::NotFound {
            name: name.to_string(),
        }
    } else {
        ResolveError::Failed {
            name: name.to_string(),
            reason: e.to_string(),
        }
    }
}

async fn lookup_host(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
) -> Result<(Vec<Endpoint>, Duration), ResolveError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        let addr = SocketAddr::new(ip, port);
        return Ok((
            vec![Endpoint {
                host: host.to_string(),
                port,
                addr,
            }],
            Duration::MAX,
        ));
    }
    let lookup = resolver
        .lookup_ip(fqdn(host))
        .await
        .map_err(|e| failed(host, &e))?;
    let endpoints: Vec<_> = lookup
        .iter()
        .map(|ip| Endpoint {
            host: host.to_string(),
            port,
            addr: SocketAddr::new(ip, port),
        })
        .collect();
    if endpoints.is_empty() {
        return Err(ResolveError::NotFound {
            name: host.to_string(),
        });
    }
    Ok((endpoints, remaining(lookup.valid_until())))
}

async fn query(resolver: &TokioResolver, parsed: &BackendAddr) -> Answer {
    match parsed {
        BackendAddr::Socket(_) => unreachable_socket(parsed),
        BackendAddr::Host { host, port } => lookup_host(resolver, host, *port).await,
        BackendAddr::Srv(name) => {
            let lookup = resolver
                .lookup(fqdn(name), RecordType::SRV)
                .await
                .map_err(|e| failed(name, &e))?;
            let mut targets: Vec<_> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::SRV(srv) => Some((
                        srv.priority,
                        std::cmp::Reverse(srv.weight),
                        srv.target
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                        srv.port,
                    )),
                    _ => None,
                })
                .collect();
            targets.sort();
            if targets.is_empty() {
                return Err(ResolveError::NotFound { name: name.clone() });
            }
            let mut ttl = remaining(lookup.valid_until());
            let mut endpoints = Vec::new();
            let mut last = None;
            for (_, _, target, port) in targets {
                match lookup_host(resolver, &target, port).await {
                    Ok((found, t)) => {
                        ttl = ttl.min(t);
                        endpoints.extend(found);
                    }
                    Err(e) => last = Some(e),
                }
            }
            match (endpoints.is_empty(), last) {
                (true, Some(e)) => Err(e),
                _ => Ok((endpoints, ttl)),
            }
        }
    }
}

/// Socket addresses never reach DNS (see [`BackendResolver::resolve`]).
fn unreachable_socket(parsed: &BackendAddr) -> Answer {
    Err(ResolveError::Invalid {
        addr: name_of(parsed),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_addresses_parse() {
        assert_eq!(
            BackendAddr::parse("10.0.0.5:2222").unwrap(),
            BackendAddr::Socket("10.0.0.5:2222".parse().unwrap())
        );
        assert_eq!(
            BackendAddr::parse("[fd00::5]:22").unwrap(),
            BackendAddr::Socket("[fd00::5]:22".parse().unwrap())
        );
        assert_eq!(
            BackendAddr::parse("Job-0.Training.svc.cluster.local.:2222").unwrap(),
            BackendAddr::Host {
                host: "job-0.training.svc.cluster.local".into(),
                port: 2222
            }
        );
        assert_eq!(
            BackendAddr::parse("srv:_ssh._tcp.job-0.training.svc.cluster.local").unwrap(),
            BackendAddr::Srv("_ssh._tcp.job-0.training.svc.cluster.local".into())
        );
        for bad in [
            "job-0.training",
            "job:abc",
            "srv:",
            "srv:a:1",
            ":22",
            "[::1:22",
            "a:99999",
            "a:0",
            "a:+22",
            "a:",
            "[job-0]:22",
            "root@job-0:22",
            "job-0:22/x",
            "job 0:22",
        ] {
            let e = BackendAddr::parse(bad).unwrap_err();
            assert!(e.to_string().contains("expected host:port"), "{bad}: {e}");
        }
    }
}
