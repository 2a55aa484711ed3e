//! The configuration as written: TOML file plus `SSH_EDGE_*` environment overrides.
//!
//! Every field has a default so an empty file is a valid starting point; `validate` in the
//! parent module turns this into the typed [`super::EdgeConfig`] and lists all problems at once.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::hostname::{self, KindSpec};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    pub listen: RawListen,
    pub tls: RawTls,
    pub ssh: RawSsh,
    pub hosts: RawHosts,
    pub auth: RawAuth,
    /// Tenants / control planes, by the name used as `<remote>` label. `default` is the remote
    /// of host names without a remote label.
    pub remotes: BTreeMap<String, RawRemote>,
    pub backend: RawBackend,
    pub routes: Vec<RawRoute>,
    pub token: RawToken,
    pub limits: super::admission::RawLimits,
    pub admin: super::admission::RawAdmin,
    pub dns: super::dns::RawDns,
    pub control_plane: super::control_plane::RawControlPlane,
    pub reload: super::watch::RawReload,
    pub audit: RawAudit,
}

/// The audit stream (see `audit`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAudit {
    /// JSON-lines file the audit events are appended to; "-" for stdout; unset = off.
    pub file: Option<PathBuf>,
}

impl Default for RawListen {
    fn default() -> Self {
        Self {
            tls: None,
            ssh: None,
            admin: None,
            token_plain: None,
            drain_timeout_secs: 30,
            proxy_protocol: "off".into(),
            proxy_trusted_cidrs: Vec::new(),
            backlog: 1024,
            workers: 0,
        }
    }
}

/// Front B: the token preamble spoken by the installed client helpers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawToken {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required entry of the `aud` claim.
    pub audience: String,
    /// Longest accepted token lifetime (`exp - iat`), seconds. Default: what the issuer
    /// mints (`DEFAULT_TOKEN_LIFETIME_SECS`); `exp - iat` comes from one clock, so no skew.
    pub max_lifetime_secs: u64,
    /// Each token (`jti` of a remote) opens one connection per replica; a second use while
    /// the token is alive is refused (`replayed`).
    pub single_use: bool,
    /// Most live tokens remembered for `single_use`; when full, new tokens are refused
    /// (`replay_cache_full`) rather than a live one forgotten.
    pub replay_cache_entries: usize,
    /// Seconds a client may take to send the whole preamble after the TLS handshake.
    pub preamble_timeout_secs: u64,
}

impl Default for RawToken {
    fn default() -> Self {
        Self {
            issuer: "ssh-edge".into(),
            audience: "ssh-edge".into(),
            max_lifetime_secs: crate::auth::token::DEFAULT_TOKEN_LIFETIME_SECS,
            single_use: true,
            replay_cache_entries: crate::auth::token::DEFAULT_REPLAY_CACHE_ENTRIES,
            preamble_timeout_secs: 10,
        }
    }
}

/// One token-signing public key of a remote; several allow rotation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTokenKey {
    /// The JWT header `kid` that selects this key; unique across all remotes.
    pub kid: String,
    /// PEM `-----BEGIN PUBLIC KEY-----` (P-256), inline.
    pub public_key: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawListen {
    /// Front A: TLS with SNI, SSH terminated. E.g. "0.0.0.0:443".
    pub tls: Option<String>,
    /// Front C: plain SSH, target in the user name. E.g. "0.0.0.0:22".
    pub ssh: Option<String>,
    /// Admin HTTP endpoint: /metrics, /healthz, /readyz. E.g. "127.0.0.1:9100".
    pub admin: Option<String>,
    /// Front B without TLS, for helpers run with their "insecure" switch: the token preamble
    /// straight on TCP. Only for private networks. E.g. "10.0.0.5:8022".
    pub token_plain: Option<String>,
    /// On SIGTERM/SIGINT: listeners close at once, open sessions get this many seconds to end.
    pub drain_timeout_secs: u64,
    /// PROXY protocol on every listener: "off", "v1", "v2" or "any". When on, only
    /// `proxy_trusted_cidrs` may connect, and each connection must start with a header.
    pub proxy_protocol: String,
    /// The load balancers: CIDRs (or addresses) whose PROXY headers are believed.
    pub proxy_trusted_cidrs: Vec<String>,
    /// Listen backlog of every listener (the kernel caps it at net.core.somaxconn).
    pub backlog: u32,
    /// Worker threads that run connections, each a whole connection on one thread (0: one
    /// per core the process may use). Read at start; a reload does not change it.
    pub workers: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Seconds a client may take for the TLS handshake.
    pub handshake_timeout_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSsh {
    /// OpenSSH private keys the edge presents as its host keys.
    pub host_key_files: Vec<PathBuf>,
    /// Optional host certificates for those keys (`@cert-authority *.<suffix>` for users).
    pub host_certificate_files: Vec<PathBuf>,
    /// Channel window advertised to clients and backends, bytes.
    pub window_size: u32,
    /// Largest channel packet accepted, bytes.
    pub max_packet_size: u32,
    /// Keepalive interval on both hops, seconds (0 = off).
    pub keepalive_interval_secs: u64,
    /// Unanswered keepalives before the peer is declared dead.
    pub keepalive_max: usize,
    /// Seconds from TCP accept until authentication must be complete.
    pub login_grace_secs: u64,
    pub max_auth_attempts: usize,
}

impl Default for RawSsh {
    fn default() -> Self {
        Self {
            host_key_files: Vec::new(),
            host_certificate_files: Vec::new(),
            window_size: 8 * 1024 * 1024,
            max_packet_size: 32 * 1024,
            keepalive_interval_secs: 30,
            keepalive_max: 4,
            login_grace_secs: 30,
            max_auth_attempts: 6,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawHosts {
    pub suffix: String,
    pub kinds: Vec<KindSpec>,
}

impl Default for RawHosts {
    fn default() -> Self {
        Self {
            suffix: hostname::DEFAULT_SUFFIX.into(),
            kinds: hostname::default_kinds(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawAuth {
    pub max_clock_skew_secs: u64,
    /// "enforce" runs the certificate's force-command instead of what the client asked;
    /// "refuse" denies certificates that carry one.
    pub force_command: String,
    /// On a reload that revokes a serial or key id, end that certificate's open sessions too.
    pub kill_revoked_sessions: bool,
}

impl Default for RawAuth {
    fn default() -> Self {
        Self {
            max_clock_skew_secs: 60,
            force_command: "enforce".into(),
            kill_revoked_sessions: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRemote {
    /// User CAs this remote trusts: OpenSSH public key lines or "SHA256:…" fingerprints.
    pub trusted_user_cas: Vec<String>,
    pub revoked_serials: Vec<u64>,
    pub revoked_key_ids: Vec<String>,
    /// ES256 public keys whose tokens open this remote's workloads on front B.
    pub token_keys: Vec<RawTokenKey>,
    /// Allow `ssh -L/-D` to this remote's workloads. Default true; routes can only narrow it.
    pub port_forwarding: Option<bool>,
    /// Allow `ssh -R` to this remote's workloads. Default true; routes can only narrow it.
    pub remote_forwarding: Option<bool>,
    /// Allow `ssh -A` to this remote's workloads. Default true; routes can only narrow it.
    pub agent_forwarding: Option<bool>,
    /// End sessions idle (no channel data either way) this long; 0 = never. Routes override.
    pub idle_timeout_secs: Option<u64>,
    /// End sessions this long after they started; 0 = never. Routes override.
    pub max_session_secs: Option<u64>,
    /// End sessions when the user's certificate expires (default true). Routes override.
    pub disconnect_at_cert_expiry: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawBackend {
    pub connect_timeout_secs: u64,
    /// Edge CA private key: the edge mints a short-lived user certificate per session with it.
    pub edge_ca_key_file: Option<PathBuf>,
    /// Validity of minted backend certificates, seconds.
    pub cert_validity_secs: u64,
    /// Alternative to the edge CA: one fixed key (OpenSSH private key file).
    pub identity_file: Option<PathBuf>,
    /// known_hosts file used to verify backend host keys (`[host]:port` entries).
    pub known_hosts_file: Option<PathBuf>,
    /// Pinned backend host public keys (OpenSSH lines or SHA256 fingerprints), any backend.
    pub host_keys: Vec<String>,
    /// Host CAs whose host certificates are accepted for any backend (OpenSSH public key
    /// lines or SHA256 fingerprints). The certificate must name the backend host among its
    /// principals. For CAs limited to some names, use `@cert-authority` in known_hosts_file.
    pub host_cas: Vec<String>,
    /// Accept any backend host key. Insecure; logged loudly at start and per session.
    pub accept_any_host_key: bool,
    /// Upstream multiplexing: user connections with the same backend login (same backend,
    /// login user, principal and user certificate) share one backend SSH connection.
    pub multiplex: bool,
    /// A shared backend connection closes this long after its last user left.
    pub multiplex_idle_secs: u64,
    /// User connections one shared backend connection serves at most (sshd's MaxSessions,
    /// default 10, caps the session channels on one connection).
    pub multiplex_max_clients: usize,
}

impl Default for RawBackend {
    fn default() -> Self {
        Self {
            connect_timeout_secs: 10,
            edge_ca_key_file: None,
            cert_validity_secs: 300,
            identity_file: None,
            known_hosts_file: None,
            host_keys: Vec::new(),
            host_cas: Vec::new(),
            accept_any_host_key: false,
            multiplex: false,
            multiplex_idle_secs: 60,
            multiplex_max_clients: 8,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRoute {
    /// Workload kind this route serves.
    pub kind: String,
    /// Remote this route serves; absent = any remote.
    pub remote: Option<String>,
    /// Extra equality conditions on host-name fields, e.g. `{ job_id = "abc1234" }`.
    #[serde(rename = "match")]
    pub match_fields: BTreeMap<String, String>,
    /// Backend address template, e.g. "{job_id}-{node}.training.svc.cluster.local:2222".
    pub backend: String,
    /// Login user on the backend sshd, e.g. "baseten".
    pub login_user: String,
    /// Principal the user's certificate must carry, e.g. "{job_id}".
    pub principal: String,
    /// Principal of the certificate the edge mints for the backend; defaults to `principal`.
    pub backend_principal: Option<String>,
    /// Allow `ssh -L/-D` on this route (the remote and the certificate must also permit it).
    /// Default true.
    pub port_forwarding: Option<bool>,
    /// Allow `ssh -R` on this route (the remote and the certificate must also permit it).
    /// Default true.
    pub remote_forwarding: Option<bool>,
    /// Allow `ssh -A` on this route (the remote and the certificate must also permit it).
    /// Default true.
    pub agent_forwarding: Option<bool>,
    /// Idle limit on this route (over the remote's); 0 = never.
    pub idle_timeout_secs: Option<u64>,
    /// Maximum session time on this route (over the remote's); 0 = never.
    pub max_session_secs: Option<u64>,
    /// End at certificate expiry on this route (over the remote's).
    pub disconnect_at_cert_expiry: Option<bool>,
}

impl RawRemote {
    pub(crate) fn lifetimes(&self) -> crate::route::lifetime::LifetimeSettings {
        crate::route::lifetime::LifetimeSettings {
            idle_timeout_secs: self.idle_timeout_secs,
            max_session_secs: self.max_session_secs,
            disconnect_at_cert_expiry: self.disconnect_at_cert_expiry,
        }
    }
}

impl RawRoute {
    pub(crate) fn lifetimes(&self) -> crate::route::lifetime::LifetimeSettings {
        crate::route::lifetime::LifetimeSettings {
            idle_timeout_secs: self.idle_timeout_secs,
            max_session_secs: self.max_session_secs,
            disconnect_at_cert_expiry: self.disconnect_at_cert_expiry,
        }
    }
}
