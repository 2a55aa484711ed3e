//! Which replicas to ask: `--admin` URLs as given, or every replica of a deployment found
//! through DNS (`--replicas NAME[:PORT]`: all A/AAAA records; `--replicas srv:NAME`: host and
//! port of every SRV record).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use hickory_resolver::proto::rr::{RData, RecordType};
use hyper::Uri;
use hyper::http::uri::{Authority, Scheme};

use super::http::ReplicaError;
use crate::text::escape_untrusted;

/// The admin port when a URL or `--replicas` name gives none (the usual `listen.admin`).
pub(super) const DEFAULT_ADMIN_PORT: u16 = 9100;

/// One replica's admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// How the output names it (and the `Host` header): `HOST:PORT`, `[v6]:PORT`.
    pub replica: String,
    /// Where to connect: a name or an IP literal (no brackets).
    pub host: String,
    pub port: u16,
}

impl Target {
    fn at(addr: SocketAddr) -> Target {
        Target {
            replica: addr.to_string(),
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

/// A replica that could not be asked, and why.
#[derive(Debug)]
pub(crate) struct Failure {
    pub replica: String,
    pub error: ReplicaError,
}

/// `--replicas`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReplicasSpec {
    Addr(SocketAddr),
    Host { host: String, port: u16 },
    Srv(String),
}

/// Why the replicas could not be found. Messages name the argument and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    #[error(
        "invalid admin address \"{url}\": expected http://HOST[:PORT] or HOST[:PORT] (plain HTTP, no path)"
    )]
    InvalidUrl { url: String },
    #[error(
        "invalid --replicas \"{spec}\": expected NAME[:PORT], IP[:PORT], [IPv6]:PORT or srv:NAME"
    )]
    InvalidReplicas { spec: String },
    #[error("invalid --dns-server \"{addr}\": expected IP or IP:PORT")]
    InvalidDnsServer { addr: String },
    #[error("no DNS resolver: {reason}")]
    Resolver { reason: String },
    #[error("{name} is not in DNS (no {kind} records)")]
    NotFound { name: String, kind: &'static str },
    #[error("DNS lookup of {name} failed: {reason}")]
    Lookup { name: String, reason: String },
    #[error("no answer from DNS for {name} within {secs} s")]
    Timeout { name: String, secs: u64 },
}

/// Host (no brackets, lowercase) and port of an authority `hyper` parsed, if it names an IP
/// address or a DNS name and nothing else: `Authority` itself takes a userinfo part, sub-delims
/// in names and anything between brackets.
fn host_port(authority: &Authority) -> Option<(String, Option<u16>)> {
    if authority.as_str().contains('@') {
        return None;
    }
    let port = crate::uri::explicit_port(authority).ok()?;
    let host = authority.host();
    let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().ok()?.to_string(),
        None => {
            let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
            if host.is_empty() || !host.chars().all(name_char) {
                return None;
            }
            host.to_ascii_lowercase()
        }
    };
    Some((host, port))
}

fn display_name(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

/// An `--admin` (or `--replica`) value: `http://HOST[:PORT][/]` or `HOST[:PORT][/]`.
pub(super) fn parse_admin_url(url: &str) -> Result<Target, TargetError> {
    let invalid = || TargetError::InvalidUrl {
        url: escape_untrusted(url, 100),
    };
    let trimmed = url.trim();
    // No scheme is the usual spelling, and means plain HTTP.
    let uri: Uri = if trimmed.contains("://") {
        trimmed.parse()
    } else {
        format!("http://{trimmed}").parse()
    }
    .map_err(|_| invalid())?;
    // `Uri` drops a fragment without a word: refuse it with the rest of a path.
    let bare = uri.scheme() == Some(&Scheme::HTTP)
        && matches!(uri.path(), "" | "/")
        && uri.query().is_none()
        && !trimmed.contains('#');
    let (host, port) = uri
        .authority()
        .filter(|_| bare)
        .and_then(host_port)
        .ok_or_else(invalid)?;
    let port = port.unwrap_or(DEFAULT_ADMIN_PORT);
    Ok(Target {
        replica: display_name(&host, port),
        host,
        port,
    })
}

/// `--replicas NAME[:PORT]`, `IP[:PORT]`, `[v6]:PORT` or `srv:NAME`.
pub(super) fn parse_replicas(spec: &str) -> Result<ReplicasSpec, TargetError> {
    let invalid = || TargetError::InvalidReplicas {
        spec: escape_untrusted(spec, 100),
    };
    let spec = spec.trim();
    if let Some(name) = spec.strip_prefix("srv:") {
        let ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        return if ok {
            Ok(ReplicasSpec::Srv(name.to_ascii_lowercase()))
        } else {
            Err(invalid())
        };
    }
    if let Ok(ip) = spec.parse::<IpAddr>() {
        return Ok(ReplicasSpec::Addr(SocketAddr::new(ip, DEFAULT_ADMIN_PORT)));
    }
    let (host, port) = spec
        .parse::<Authority>()
        .ok()
        .as_ref()
        .and_then(host_port)
        .ok_or_else(invalid)?;
    let port = port.unwrap_or(DEFAULT_ADMIN_PORT);
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => ReplicasSpec::Addr(SocketAddr::new(ip, port)),
        Err(_) => ReplicasSpec::Host { host, port },
    })
}

/// `--dns-server IP[:PORT]` (port 53 when left out).
pub(super) fn parse_dns_server(addr: &str) -> Result<SocketAddr, TargetError> {
    addr.parse::<SocketAddr>()
        .or_else(|_| addr.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| TargetError::InvalidDnsServer {
            addr: escape_untrusted(addr, 100),
        })
}

/// Replicas found in DNS, in address order (DNS servers rotate their answers) without
/// repeats.
fn sorted(mut found: Vec<SocketAddr>) -> Vec<Target> {
    found.sort();
    found.dedup();
    found.into_iter().map(Target::at).collect()
}

/// `targets` without repeats, in their first order.
pub(super) fn dedup(targets: Vec<Target>) -> Vec<Target> {
    let mut seen = std::collections::HashSet::new();
    targets
        .into_iter()
        .filter(|t| seen.insert(t.replica.clone()))
        .collect()
}

fn build_resolver(servers: &[SocketAddr], timeout: Duration) -> Result<TokioResolver, TargetError> {
    let mut builder = crate::route::dns::resolver_builder(servers)
        .map_err(|reason| TargetError::Resolver { reason })?;
    let options = builder.options_mut();
    // Two tries within the caller's timeout.
    options.timeout = (timeout / 2).max(Duration::from_millis(200));
    options.attempts = 2;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    builder.build().map_err(|e| TargetError::Resolver {
        reason: e.to_string(),
    })
}

fn lookup_error(
    name: &str,
    kind: &'static str,
    e: &hickory_resolver::net::NetError,
) -> TargetError {
    if e.is_nx_domain() || e.is_no_records_found() {
        TargetError::NotFound {
            name: name.to_string(),
            kind,
        }
    } else {
        TargetError::Lookup {
            name: name.to_string(),
            reason: e.to_string(),
        }
    }
}

/// Every address of `host`, at `port`.
async fn addresses(
    resolver: &TokioResolver,
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, TargetError> {
    let lookup = tokio::time::timeout(timeout, resolver.lookup_ip(host))
        .await
        .map_err(|_| TargetError::Timeout {
            name: host.to_string(),
            secs: timeout.as_secs(),
        })?
        .map_err(|e| lookup_error(host, "A/AAAA", &e))?;
    let found: Vec<_> = lookup.iter().map(|ip| SocketAddr::new(ip, port)).collect();
    if found.is_empty() {
        return Err(TargetError::NotFound {
            name: host.to_string(),
            kind: "A/AAAA",
        });
    }
    Ok(found)
}

/// The replicas `spec` names. An SRV target that does not resolve is a replica that cannot
/// be asked: it comes back as a failure, not as an error for the whole command.
pub(super) async fn resolve(
    spec: &ReplicasSpec,
    dns_servers: &[SocketAddr],
    timeout: Duration,
) -> Result<(Vec<Target>, Vec<Failure>), TargetError> {
    match spec {
        ReplicasSpec::Addr(addr) => Ok((vec![Target::at(*addr)], Vec::new())),
        ReplicasSpec::Host { host, port } => {
            let resolver = build_resolver(dns_servers, timeout)?;
            Ok((
                sorted(addresses(&resolver, host, *port, timeout).await?),
                Vec::new(),
            ))
        }
        ReplicasSpec::Srv(name) => {
            let resolver = build_resolver(dns_servers, timeout)?;
            let lookup = tokio::time::timeout(timeout, resolver.lookup(name, RecordType::SRV))
                .await
                .map_err(|_| TargetError::Timeout {
                    name: name.clone(),
                    secs: timeout.as_secs(),
                })?
                .map_err(|e| lookup_error(name, "SRV", &e))?;
            let mut records: Vec<_> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    // Every target is a replica to ask: priority and weight do not matter.
                    RData::SRV(srv) => Some((
                        srv.target
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_ascii_lowercase(),
                        srv.port,
                    )),
                    _ => None,
                })
                .collect();
            records.sort();
            records.dedup();
            if records.is_empty() {
                return Err(TargetError::NotFound {
                    name: name.clone(),
                    kind: "SRV",
                });
            }
            let answers = futures::future::join_all(
                records
                    .iter()
                    .map(|(host, port)| addresses(&resolver, host, *port, timeout)),
            )
            .await;
            let (mut targets, mut failures) = (Vec::new(), Vec::new());
            for ((host, port), answer) in records.iter().zip(answers) {
                match answer {
                    Ok(found) => targets.extend(found),
                    Err(e) => failures.push(Failure {
                        replica: format!("{host}:{port}"),
                        error: ReplicaError::Resolve {
                            reason: e.to_string(),
                        },
                    }),
                }
            }
            Ok((sorted(targets), failures))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(replica: &str, host: &str, port: u16) -> Target {
        Target {
            replica: replica.into(),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn admin_urls_parse() {
        for (url, want) in [
            (
                "http://10.0.0.1:9100",
                target("10.0.0.1:9100", "10.0.0.1", 9100),
            ),
            (
                "HTTP://Edge-0.internal:9200/",
                target("edge-0.internal:9200", "edge-0.internal", 9200),
            ),
            ("10.0.0.2", target("10.0.0.2:9100", "10.0.0.2", 9100)),
            (
                "http://[fd00::1]:9100",
                target("[fd00::1]:9100", "fd00::1", 9100),
            ),
            ("[fd00::2]", target("[fd00::2]:9100", "fd00::2", 9100)),
            (
                " edge-1.internal:9200/ ",
                target("edge-1.internal:9200", "edge-1.internal", 9200),
            ),
            // IPv6 is written the one way, so that a replica given twice is asked once.
            (
                "[FD00:0::3]:9100",
                target("[fd00::3]:9100", "fd00::3", 9100),
            ),
        ] {
            assert_eq!(parse_admin_url(url), Ok(want), "{url}");
        }
        for bad in [
            "https://10.0.0.1:9100",
            "http://10.0.0.1:9100/metrics",
            "http://user@10.0.0.1:9100",
            "http://10.0.0.1:99999",
            "http://10.0.0.1:0",
            "http://fd00::1:9100",
            "http://[fd00::1",
            "http://",
            "http://a b:9100",
            "10.0.0.1:9100?x=1",
            "http://10.0.0.1:9100/#top",
            "http://10.0.0.1:",
            "10.0.0.1:+80",
            "http://:9100",
            "http://[edge-0]:9100",
            "http://edge!0:9100",
            "ftp://10.0.0.1",
            "10.0.0.1:9100:9200",
            "",
        ] {
            let e = parse_admin_url(bad).unwrap_err();
            let text = e.to_string();
            assert!(text.contains("expected http://HOST[:PORT]"), "{bad}: {e}");
            assert!(text.contains(&format!("\"{bad}\"")), "{bad}: {e}");
        }
    }

    #[test]
    fn replicas_specs_parse() {
        assert_eq!(
            parse_replicas("ssh-edge-admin.edge.svc.cluster.local"),
            Ok(ReplicasSpec::Host {
                host: "ssh-edge-admin.edge.svc.cluster.local".into(),
                port: 9100
            })
        );
        assert_eq!(
            parse_replicas("Edges.test:9200"),
            Ok(ReplicasSpec::Host {
                host: "edges.test".into(),
                port: 9200
            })
        );
        assert_eq!(
            parse_replicas("10.0.0.1"),
            Ok(ReplicasSpec::Addr("10.0.0.1:9100".parse().unwrap()))
        );
        assert_eq!(
            parse_replicas("fd00::1"),
            Ok(ReplicasSpec::Addr("[fd00::1]:9100".parse().unwrap()))
        );
        assert_eq!(
            parse_replicas("[fd00::1]:9200"),
            Ok(ReplicasSpec::Addr("[fd00::1]:9200".parse().unwrap()))
        );
        assert_eq!(
            parse_replicas("srv:_admin._tcp.edges.test"),
            Ok(ReplicasSpec::Srv("_admin._tcp.edges.test".into()))
        );
        for bad in [
            "",
            "srv:",
            "srv:a:1",
            "edges.test:x",
            "edges.test:0",
            "a/b",
            ":9100",
            "u@edges.test",
            "[edges]:9100",
            "edges.test:9100?",
        ] {
            let e = parse_replicas(bad).unwrap_err();
            assert!(e.to_string().contains("expected NAME[:PORT]"), "{bad}: {e}");
        }
    }

    #[test]
    fn dns_servers_parse_and_targets_dedup() {
        assert_eq!(
            parse_dns_server("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_dns_server("10.96.0.10"),
            Ok("10.96.0.10:53".parse().unwrap())
        );
        assert!(parse_dns_server("kube-dns").is_err());
        let a = target("a:1", "a", 1);
        let b = target("b:1", "b", 1);
        assert_eq!(dedup(vec![a.clone(), b.clone(), a.clone()]), vec![a, b]);
    }
}
