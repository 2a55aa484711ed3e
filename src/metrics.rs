//! Prometheus metrics, owned by one struct passed around as `Arc<Metrics>` (no globals).
//! Label sets are bounded: fronts, directions and fixed reason codes, never users or jobs.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Outcomes of a backend name lookup, all exported from the start.
pub(crate) const DNS_OUTCOMES: [&str; 6] = [
    "cached",
    "negative_cached",
    "resolved",
    "nxdomain",
    "stale",
    "error",
];

pub struct Metrics {
    registry: Registry,
    /// Accepted TCP connections, by listener ("tls", "ssh", "token_plain").
    pub connections: IntCounterVec,
    /// Connections refused before a session existed, by listener and reason
    /// (`front::reject`).
    pub rejections: IntCounterVec,
    /// Failed certificate checks, by reason (`CertRejection::reason`).
    pub auth_failures: IntCounterVec,
    /// Successful logins, by front ("tls" = A, "token" = B, "ssh" = C).
    pub logins: IntCounterVec,
    pub sessions_active: IntGauge,
    /// Sessions ended, by reason (`session::END_REASONS`).
    pub sessions_ended: IntCounterVec,
    /// Audit events lost because the sink fell behind.
    pub audit_dropped: IntCounter,
    /// Connections admitted and not yet authenticated (the pre-auth limits count these).
    pub unauthenticated: IntGauge,
    /// PROXY protocol headers honoured, by version.
    pub proxy_headers: IntCounterVec,
    pub channels_active: IntGauge,
    pub channels: IntCounterVec,
    /// Backend connection failures, by reason.
    pub backend_failures: IntCounterVec,
    pub backend_connect_seconds: HistogramVec,
    pub backend_logins: IntCounterVec,
    pub config_reloads: IntCounterVec,
    /// Bytes forwarded by the channel bridge: direction "up" (client → backend) / "down".
    pub bridge_bytes: IntCounterVec,
    /// Bytes forwarded by passthrough (front B), counted as they flow.
    pub splice_bytes: IntCounterVec,
    /// Backend name lookups, by outcome ([`DNS_OUTCOMES`]).
    pub dns_lookups: IntCounterVec,
    /// Time of lookups that went to the DNS server.
    pub dns_lookup_seconds: Histogram,
    /// Workload wake-ups, by outcome (ready, failed, timeout): one per host, however many
    /// logins waited.
    pub activations: IntCounterVec,
    /// Time from the start of a wake-up to the backend accepting connections.
    pub activation_seconds: Histogram,
    /// Control-plane lookups, by outcome (`CONTROL_PLANE_OUTCOMES`).
    pub control_plane_requests: IntCounterVec,
    /// Logins decided without the control plane, by `on_unavailable` (allow, deny).
    pub control_plane_unavailable: IntCounterVec,
    /// Time of requests that went to the control plane (not cached answers).
    pub control_plane_seconds: Histogram,
}

/// Outcomes of control-plane lookups: answered, served from the cache, or why not.
pub(crate) const CONTROL_PLANE_OUTCOMES: [&str; 6] = [
    "ok",
    "cached",
    "unreachable",
    "timeout",
    "http_error",
    "bad_answer",
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("static metric definition");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric name");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric definition");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric name");
            g
        };
        let connections = counter(
            "ssh_edge_connections_total",
            "TCP connections accepted, by listener",
            &["listener"],
        );
        let rejections = counter(
            "ssh_edge_connections_rejected_total",
            "Connections refused before a session existed, by listener and reason",
            &["listener", "reason"],
        );
        let auth_failures = counter(
            "ssh_edge_auth_failures_total",
            "Refused user certificates",
            &["reason"],
        );
        let logins = counter("ssh_edge_logins_total", "Successful logins", &["front"]);
        let sessions_active = gauge("ssh_edge_sessions_active", "Client sessions currently open");
        let sessions_ended = counter(
            "ssh_edge_sessions_ended_total",
            "Sessions ended, by reason: client, backend, closed (front B: either side), drain, killed (admin API), revoked (certificate revoked by a reload), idle, max_duration, cert_expiry, workload_expiry (the control plane's session expiry)",
            &["reason"],
        );
        let audit_dropped = IntCounter::new(
            "ssh_edge_audit_dropped_total",
            "Audit events lost because the audit sink fell behind",
        )
        .expect("static metric definition");
        registry
            .register(Box::new(audit_dropped.clone()))
            .expect("unique metric name");
        let unauthenticated = gauge(
            "ssh_edge_unauthenticated_connections",
            "Connections admitted and not yet authenticated",
        );
        let proxy_headers = counter(
            "ssh_edge_proxy_headers_total",
            "PROXY protocol headers honoured, by version (v1, v2, local: the balancer's own)",
            &["version"],
        );
        // Every series exists from the start (a missing series is not a zero).
        for version in ["v1", "v2", "local"] {
            proxy_headers.with_label_values(&[version]);
        }
        let channels_active = gauge(
            "ssh_edge_channels_active",
            "Bridged channels currently open",
        );
        let channels = counter(
            "ssh_edge_channels_total",
            "Channels opened, by outcome",
            &["outcome"],
        );
        let backend_failures = counter(
            "ssh_edge_backend_failures_total",
            "Failures reaching or logging in to a backend",
            &["reason"],
        );
        let backend_connect_seconds = HistogramVec::new(
            HistogramOpts::new(
                "ssh_edge_backend_connect_seconds",
                "Time to connect and log in to a backend",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["outcome"],
        )
        .expect("static metric definition");
        registry
            .register(Box::new(backend_connect_seconds.clone()))
            .expect("unique metric name");
        let backend_logins = counter(
            "ssh_edge_backend_logins_total",
            "User logins served by a backend connection: upstream = new, shared (multiplexed)",
            &["upstream"],
        );
        let config_reloads = counter(
            "ssh_edge_config_reloads_total",
            "Configuration reloads (SIGHUP), by outcome: ok, error (running config kept)",
            &["outcome"],
        );
        let bridge_bytes = counter(
            "ssh_edge_bridge_bytes_total",
            "Channel bytes forwarded",
            &["direction"],
        );
        let splice_bytes = counter(
            "ssh_edge_splice_bytes_total",
            "Passthrough bytes forwarded",
            &["direction"],
        );
        let dns_lookups = counter(
            "ssh_edge_dns_lookups_total",
            "Backend name lookups: cached, negative_cached, resolved, nxdomain, stale (DNS failed, last answer used), error",
            &["outcome"],
        );
        for outcome in DNS_OUTCOMES {
            dns_lookups.with_label_values(&[outcome]);
        }
        let dns_lookup_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ssh_edge_dns_lookup_seconds",
                "Time of backend name lookups sent to the DNS server",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("static metric definition");
        registry
            .register(Box::new(dns_lookup_seconds.clone()))
            .expect("unique metric name");
        let activations = counter(
            "ssh_edge_activations_total",
            "Workload wake-ups, by outcome: ready, failed, timeout",
            &["outcome"],
        );
        for outcome in ["ready", "failed", "timeout"] {
            activations.with_label_values(&[outcome]);
        }
        let activation_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ssh_edge_activation_seconds",
                "Time from the start of a workload wake-up to its backend accepting connections",
            )
            .buckets(vec![
                0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
            ]),
        )
        .expect("static metric definition");
        registry
            .register(Box::new(activation_seconds.clone()))
            .expect("unique metric name");
        let control_plane_requests = counter(
            "ssh_edge_control_plane_requests_total",
            "Control-plane lookups, by outcome: ok, cached, unreachable, timeout, http_error, bad_answer",
            &["outcome"],
        );
        for outcome in CONTROL_PLANE_OUTCOMES {
            control_plane_requests.with_label_values(&[outcome]);
        }
        let control_plane_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "ssh_edge_control_plane_request_seconds",
                "Time of requests sent to the control plane (cached answers are not timed)",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("static metric definition");
        registry
            .register(Box::new(control_plane_seconds.clone()))
            .expect("unique metric name");
        let control_plane_unavailable = counter(
            "ssh_edge_control_plane_unavailable_total",
            "Logins decided without the control plane (it did not answer), by on_unavailable: allow, deny",
            &["decision"],
        );
        for decision in ["allow", "deny"] {
            control_plane_unavailable.with_label_values(&[decision]);
        }
        // Series with fixed label values exist from the start, so dashboards and alerts
        // see 0 rather than nothing (a missing series is not a zero).
        for listener in ["tls", "ssh", "token_plain"] {
            connections.with_label_values(&[listener]);
        }
        for front in ["tls", "token", "ssh"] {
            logins.with_label_values(&[front]);
        }
        for reason in [
            "not_certificate",
            "bad_signature",
            "untrusted_ca",
            "not_user_cert",
            "revoked",
            "expired",
            "not_yet_valid",
            "no_principals",
            "principal_mismatch",
            "source_address",
            "force_command",
            "critical_option",
        ] {
            auth_failures.with_label_values(&[reason]);
        }
        for reason in [
            "resolve",
            "not_found",
            "connect",
            "timeout",
            "host_key",
            "handshake",
            "login_refused",
            "mint",
        ] {
            backend_failures.with_label_values(&[reason]);
        }
        for outcome in ["ok", "error"] {
            backend_connect_seconds.with_label_values(&[outcome]);
            config_reloads.with_label_values(&[outcome]);
        }
        for upstream in ["new", "shared"] {
            backend_logins.with_label_values(&[upstream]);
        }
        for direction in ["up", "down"] {
            bridge_bytes.with_label_values(&[direction]);
            splice_bytes.with_label_values(&[direction]);
        }
        Self {
            registry,
            connections,
            rejections,
            auth_failures,
            logins,
            sessions_active,
            sessions_ended,
            audit_dropped,
            unauthenticated,
            proxy_headers,
            channels_active,
            channels,
            backend_failures,
            backend_connect_seconds,
            backend_logins,
            config_reloads,
            bridge_bytes,
            splice_bytes,
            dns_lookups,
            dns_lookup_seconds,
            activations,
            activation_seconds,
            control_plane_requests,
            control_plane_unavailable,
            control_plane_seconds,
        }
    }

    /// The counter for one label value (cloned handle, cheap to keep on the hot path).
    pub(crate) fn bytes(&self, direction: &str) -> IntCounter {
        self.bridge_bytes.with_label_values(&[direction])
    }

    /// Text exposition format, for `/metrics` and tests.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
