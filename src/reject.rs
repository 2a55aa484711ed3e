//! Why a connection was refused before it became a session, as one typed value, and the one
//! place that counts and logs it.
//!
//! Counted as `ssh_edge_connections_rejected_total{listener, reason}`: the listener is always
//! known (even before the front is), and every reason label is a fixed string. Pre-auth drops
//! (limits, PROXY protocol, grace) can come in floods, so they are logged at debug and summed up
//! by [`crate::admission`]; the rest are logged at info with their detail.

use std::fmt;
use std::net::SocketAddr;

use tracing::{debug, info};

use crate::metrics::Metrics;

/// Which socket a connection arrived on. Labels `ssh_edge_connections_total` and rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Listener {
    /// `listen.tls`: fronts A (SNI) and B (token preamble), told apart by the first byte.
    Tls,
    /// `listen.ssh`: front C.
    Ssh,
    /// `listen.token_plain`: front B without TLS.
    TokenPlain,
}

impl Listener {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Listener::Tls => "tls",
            Listener::Ssh => "ssh",
            Listener::TokenPlain => "token_plain",
        }
    }
}

/// The fixed reason label of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// A PROXY header from an address outside `listen.proxy_trusted_cidrs`.
    ProxyUntrusted,
    /// No PROXY header where the listener requires one.
    ProxyMissing,
    /// A PROXY header that does not parse, or one of the wrong version.
    ProxyMalformed,
    /// The global cap on unauthenticated connections (or its random early drop).
    PreauthFull,
    /// The per-source cap on unauthenticated connections.
    PerSource,
    /// The per-source connection rate.
    Rate,
    /// Not authenticated within `ssh.login_grace_secs`, whatever phase it was in.
    Grace,
    TlsHandshake,
    TlsTimeout,
    /// TLS done, then nothing.
    SilentClient,
    /// TLS done, then closed.
    Eof,
    ReadError,
    /// SSH over TLS without SNI: front A has no target.
    NoSni,
    /// The SSH transport failed before authentication (bad identification, key exchange).
    SshHandshake,
    /// A host name that does not parse (`HostError::reason`).
    Host(&'static str),
    /// A target no route serves (`RouteError::reason`).
    Route(&'static str),
    /// A refused token preamble (front B).
    Token(&'static str),
    /// The backend could not be reached (`UpstreamError::reason`), front B.
    Backend(&'static str),
    /// The control plane's gate: the workload is stopped, unknown, still waking or did not
    /// wake, or the control plane did not answer (`control_plane::GateRefusal::reason`).
    Workload(&'static str),
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::ProxyUntrusted => "proxy_untrusted",
            Reason::ProxyMissing => "proxy_missing",
            Reason::ProxyMalformed => "proxy_malformed",
            Reason::PreauthFull => "preauth_full",
            Reason::PerSource => "per_source",
            Reason::Rate => "rate",
            Reason::Grace => "grace",
            Reason::TlsHandshake => "tls_handshake",
            Reason::TlsTimeout => "tls_timeout",
            Reason::SilentClient => "silent_client",
            Reason::Eof => "eof",
            Reason::ReadError => "read_error",
            Reason::NoSni => "no_sni",
            Reason::SshHandshake => "ssh_handshake",
            Reason::Host(r) | Reason::Route(r) | Reason::Token(r) | Reason::Workload(r) => r,
            Reason::Backend(r) => match r {
                "timeout" => "backend_timeout",
                "not_found" => "backend_not_found",
                "resolve" => "backend_resolve",
                _ => "backend_connect",
            },
        }
    }

    /// Drops that can come by the thousand: logged at debug, summed up at info.
    pub(crate) fn is_flood(self) -> bool {
        FLOOD_REASONS.contains(&self)
    }
}

/// A refused connection: the reason label and what exactly was wrong (for the log).
#[derive(Debug, Clone)]
pub(crate) struct Rejection {
    pub reason: Reason,
    pub detail: String,
}

impl Rejection {
    pub(crate) fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

/// Counts and logs one rejection: the only place that touches the rejection counter.
pub(crate) fn record(
    metrics: &Metrics,
    listener: Listener,
    client: SocketAddr,
    rejection: &Rejection,
) {
    let reason = rejection.reason.as_str();
    metrics
        .rejections
        .with_label_values(&[listener.as_str(), reason])
        .inc();
    if rejection.reason.is_flood() {
        debug!(client = %client, listener = listener.as_str(), reason, detail = %rejection.detail, "connection dropped");
    } else {
        info!(client = %client, listener = listener.as_str(), reason, detail = %rejection.detail, "connection rejected");
    }
}

const FLOOD_REASONS: [Reason; 7] = [
    Reason::ProxyUntrusted,
    Reason::ProxyMissing,
    Reason::ProxyMalformed,
    Reason::PreauthFull,
    Reason::PerSource,
    Reason::Rate,
    Reason::Grace,
];

/// The flood-class drops so far, summed over listeners, by reason label (every series is
/// created, so each exists at 0 from the first call).
pub(crate) fn flood_counts(metrics: &Metrics) -> Vec<(&'static str, u64)> {
    FLOOD_REASONS
        .iter()
        .map(|r| {
            let n = [Listener::Tls, Listener::Ssh, Listener::TokenPlain]
                .iter()
                .map(|l| {
                    metrics
                        .rejections
                        .with_label_values(&[l.as_str(), r.as_str()])
                        .get()
                })
                .sum();
            (r.as_str(), n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_fixed_strings() {
        assert_eq!(Reason::PreauthFull.as_str(), "preauth_full");
        assert_eq!(Reason::Host("malformed").as_str(), "malformed");
        assert_eq!(Reason::Backend("timeout").as_str(), "backend_timeout");
        assert_eq!(Reason::Backend("connect").as_str(), "backend_connect");
        assert!(Reason::Grace.is_flood());
        assert!(!Reason::NoSni.is_flood());
    }

    #[test]
    fn recording_counts_by_listener_and_reason() {
        let metrics = Metrics::new();
        let client: SocketAddr = "127.0.0.2:5555".parse().unwrap();
        record(
            &metrics,
            Listener::Ssh,
            client,
            &Rejection::new(Reason::PerSource, "x"),
        );
        let text = metrics.render();
        assert!(
            text.contains(
                "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"per_source\"} 1"
            ),
            "{text}"
        );
    }
}
