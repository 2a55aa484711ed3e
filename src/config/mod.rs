//! Configuration: defaults → TOML file → `SSH_EDGE_*` environment, validated into typed settings.
//!
//! Validation collects every problem before failing, so `ssh-edge check-config` shows them all
//! at once. Secrets (private keys) are loaded here and never printed.

mod admission;
mod backend;
mod check;
mod control_plane;
mod dns;
mod extract;
pub use check::check;
pub(crate) use extract::extract_all;
mod raw;
pub(crate) mod watch;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use russh::keys::ssh_key::{Certificate, Fingerprint, PrivateKey};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use admission::{RawAdmin, RawLimits, warnings};
pub use dns::RawDns;
pub use raw::*;

use crate::auth::cert_policy::{CertPolicy, ForceCommandPolicy, parse_ca_entry};
use crate::auth::token::{TokenKey, TokenPolicy};
use crate::hostname::HostGrammar;
use crate::route::{Forwarding, RouteRule, RouteTable};

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration ({} problem{}):\n  - {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// TLS material for the TLS front.
pub struct TlsSettings {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub handshake_timeout: Duration,
}

/// SSH server settings shared by the terminating fronts.
pub struct SshSettings {
    pub host_keys: Vec<PrivateKey>,
    pub host_certificates: Vec<Certificate>,
    pub window_size: u32,
    pub max_packet_size: u32,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_max: usize,
    pub login_grace: Duration,
    pub max_auth_attempts: usize,
}

/// How the edge proves itself to backend sshd.
pub enum BackendLogin {
    /// Mint a short-lived user certificate per session, signed by this edge CA.
    EdgeCa { ca: PrivateKey, validity: Duration },
    /// One fixed key.
    Key(PrivateKey),
}

/// How backend host keys are verified.
#[derive(Debug, Clone, Default)]
pub struct HostKeyPolicy {
    pub known_hosts_file: Option<PathBuf>,
    pub pinned: Vec<Fingerprint>,
    /// Host CAs (`backend.host_cas`, and `@cert-authority` lines of the known_hosts file).
    pub host_cas: Vec<crate::auth::host_ca::HostCa>,
    /// Keys and CAs marked `@revoked` in the known_hosts file.
    pub revoked: Vec<Fingerprint>,
    pub accept_any: bool,
}

pub struct BackendSettings {
    pub connect_timeout: Duration,
    pub login: BackendLogin,
    pub host_keys: HostKeyPolicy,
    pub multiplex: Option<MultiplexSettings>,
    /// How backend names are resolved.
    pub dns: crate::route::dns::DnsSettings,
}

/// Upstream multiplexing (`backend.multiplex`), see `upstream::pool`.
#[derive(Debug, Clone, Copy)]
pub struct MultiplexSettings {
    pub idle: Duration,
    pub max_clients: usize,
}

/// The validated, typed configuration the edge runs on.
pub struct EdgeConfig {
    pub tls_listen: Option<SocketAddr>,
    pub ssh_listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub token_plain_listen: Option<SocketAddr>,
    pub drain_timeout: Duration,
    pub tls: Option<TlsSettings>,
    pub ssh: SshSettings,
    pub grammar: HostGrammar,
    /// Certificate policy per remote name ("default" for host names without a remote label).
    pub remotes: HashMap<String, Arc<CertPolicy>>,
    pub backend: BackendSettings,
    pub routes: RouteTable,
    /// Token policy per remote, for front B (remotes without token keys are absent).
    pub tokens: HashMap<String, Arc<TokenPolicy>>,
    pub preamble_timeout: Duration,
    /// `token.single_use`: the replay cache's size, `None` when tokens may be reused.
    pub token_replay_entries: Option<usize>,
    /// PROXY protocol, pre-auth limits and the login grace.
    pub admission: crate::admission::AdmissionSettings,
    pub listen_backlog: u32,
    /// `listen.workers` (0: one per core).
    pub workers: usize,
    /// `auth.kill_revoked_sessions`.
    pub kill_revoked_sessions: bool,
    /// Where audit events go (`audit.file`).
    pub audit: crate::audit::AuditSink,
    /// Bearer token required on the admin endpoint (but /healthz, /readyz).
    pub admin_token: Option<String>,
    /// `[control_plane]`, when a URL is set.
    pub control_plane: Option<crate::control_plane::ControlPlaneSettings>,
}

/// Reads defaults, then `file` (if any), then `SSH_EDGE_*` variables (`__` separates levels,
/// e.g. `SSH_EDGE_LISTEN__SSH=0.0.0.0:2222`).
pub fn load_raw(file: Option<&Path>) -> Result<RawConfig, ConfigError> {
    load_over(RawConfig::default(), file)
}

/// TOML text over the defaults, without the environment and without touching the file system
/// (the fuzz target's entry; `load_raw` reads a file and the environment).
pub fn load_raw_str(toml: &str) -> Result<RawConfig, ConfigError> {
    let figment =
        Figment::from(Serialized::defaults(RawConfig::default())).merge(Toml::string(toml));
    extract::extract_all(&figment).map_err(ConfigError::Invalid)
}

/// `base` with `SSH_EDGE_*` variables on top (the demo's generated config, for example).
pub fn with_env_overrides(base: RawConfig) -> Result<RawConfig, ConfigError> {
    load_over(base, None)
}

fn load_over(base: RawConfig, file: Option<&Path>) -> Result<RawConfig, ConfigError> {
    extract::extract_all(&figment_for(base, file)?).map_err(ConfigError::Invalid)
}

/// `base`, then `file`, then the `SSH_EDGE_*` variables.
fn figment_for(base: RawConfig, file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(base));
    if let Some(file) = file {
        if !file.exists() {
            return Err(ConfigError::Invalid(vec![format!(
                "config file {} does not exist",
                file.display()
            )]));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    // SSH_EDGE_CONFIG / _ADDR / _CA_FILE / _API_KEY / _ADMIN_TOKEN_FILE are CLI flags'
    // variables, not config keys.
    figment = figment.merge(
        Env::prefixed("SSH_EDGE_")
            .ignore(&["config", "addr", "ca_file", "api_key", "admin_token_file"])
            .split("__"),
    );
    Ok(figment)
}

/// A secret file's token: its first line, trimmed.
fn read_token_file(path: &Path) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// `load_raw` followed by `validate`.
pub(crate) fn load(file: Option<&Path>) -> Result<EdgeConfig, ConfigError> {
    validate(&load_raw(file)?)
}

/// Turns the raw configuration into typed settings, listing every problem found.
pub fn validate(raw: &RawConfig) -> Result<EdgeConfig, ConfigError> {
    let mut problems = Vec::new();

    let tls_listen = parse_addr("listen.tls", raw.listen.tls.as_deref(), &mut problems);
    let ssh_listen = parse_addr("listen.ssh", raw.listen.ssh.as_deref(), &mut problems);
    let admin_listen = parse_addr("listen.admin", raw.listen.admin.as_deref(), &mut problems);
    let token_plain_listen = parse_addr(
        "listen.token_plain",
        raw.listen.token_plain.as_deref(),
        &mut problems,
    );
    if raw.listen.tls.is_none() && raw.listen.ssh.is_none() {
        problems.push("listen: set at least one of listen.tls or listen.ssh".into());
    }

    let tls = match (&raw.tls.cert_file, &raw.tls.key_file) {
        (Some(cert), Some(key)) => {
            load_tls(cert, key, raw.tls.handshake_timeout_secs, &mut problems)
        }
        (None, None) => {
            if tls_listen.is_some() {
                problems.push(
                    "tls: listen.tls is set, so tls.cert_file and tls.key_file are required".into(),
                );
            }
            None
        }
        _ => {
            problems.push("tls: set both tls.cert_file and tls.key_file, or neither".into());
            None
        }
    };

    let ssh = validate_ssh(&raw.ssh, &mut problems);

    let remote_names: Vec<String> = raw
        .remotes
        .keys()
        .filter(|n| *n != crate::hostname::DEFAULT_REMOTE)
        .cloned()
        .collect();
    let grammar = match HostGrammar::new(&raw.hosts.suffix, &raw.hosts.kinds, &remote_names) {
        Ok(g) => Some(g),
        Err(errors) => {
            problems.extend(errors.iter().map(|e| format!("hosts: {e}")));
            None
        }
    };

    let force_command = match raw.auth.force_command.as_str() {
        "enforce" => ForceCommandPolicy::Enforce,
        "refuse" => ForceCommandPolicy::Refuse,
        other => {
            problems.push(format!(
                "auth.force_command: \"{other}\" is not one of \"enforce\", \"refuse\""
            ));
            ForceCommandPolicy::Enforce
        }
    };
    let mut remotes = HashMap::new();
    let mut remote_forwarding = HashMap::new();
    if raw.remotes.is_empty() {
        problems.push("remotes: configure at least [remotes.default] with trusted_user_cas".into());
    }
    for (name, remote) in &raw.remotes {
        let mut fingerprints = Vec::new();
        if remote.trusted_user_cas.is_empty() {
            problems.push(format!(
                "remotes.{name}.trusted_user_cas: empty, nobody could log in"
            ));
        }
        for (i, entry) in remote.trusted_user_cas.iter().enumerate() {
            match parse_ca_entry(entry) {
                Ok(fp) => fingerprints.push(fp),
                Err(e) => problems.push(format!("remotes.{name}.trusted_user_cas[{i}]: {e}")),
            }
        }
        let policy = CertPolicy {
            trusted_ca_fingerprints: fingerprints,
            revoked_serials: remote.revoked_serials.iter().copied().collect(),
            revoked_key_ids: remote
                .revoked_key_ids
                .iter()
                .cloned()
                .collect::<HashSet<_>>(),
            max_clock_skew_secs: raw.auth.max_clock_skew_secs,
            force_command,
        };
        remotes.insert(name.clone(), Arc::new(policy));
        remote_forwarding.insert(
            name.clone(),
            forwarding(
                remote.port_forwarding,
                remote.remote_forwarding,
                remote.agent_forwarding,
            ),
        );
    }

    let admission = admission::validate_admission(
        &raw.listen,
        &raw.limits,
        raw.ssh.login_grace_secs,
        &mut problems,
    );
    let admin_token = admission::load_admin_token(&raw.admin, &mut problems);
    if let Some(file) = raw.audit.file.as_deref()
        && file != Path::new("-")
        && !file
            .parent()
            .is_some_and(|d| d.as_os_str().is_empty() || d.is_dir())
    {
        problems.push(format!(
            "audit.file {}: its directory does not exist",
            file.display()
        ));
    }
    let dns = dns::validate_dns(&raw.dns, &mut problems);
    let control_plane = control_plane::validate_control_plane(&raw.control_plane, &mut problems);
    let backend = backend::validate_backend(&raw.backend, dns, &mut problems);
    let tokens = validate_tokens(raw, &mut problems);
    if raw.token.single_use && raw.token.replay_cache_entries == 0 {
        problems.push(
            "token.replay_cache_entries: must be at least 1 while token.single_use is on".into(),
        );
    }

    let mut rules = Vec::new();
    if raw.routes.is_empty() {
        problems.push("routes: no [[routes]] configured, no target could be reached".into());
    }
    for (i, r) in raw.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        if !raw.hosts.kinds.iter().any(|k| k.name == r.kind) {
            problems.push(format!(
                "{at}.kind: unknown kind \"{}\"; configured kinds: {}",
                r.kind,
                raw.hosts
                    .kinds
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(remote) = &r.remote
            && !raw.remotes.contains_key(remote)
        {
            problems.push(format!("{at}.remote: unknown remote \"{remote}\""));
        }
        for (field, value) in [
            ("backend", &r.backend),
            ("login_user", &r.login_user),
            ("principal", &r.principal),
        ] {
            if value.is_empty() {
                problems.push(format!("{at}.{field}: required"));
            }
        }
        rules.push(RouteRule {
            kind: r.kind.clone(),
            remote: r.remote.clone(),
            match_fields: r.match_fields.clone().into_iter().collect(),
            backend: r.backend.clone(),
            login_user: r.login_user.clone(),
            principal: r.principal.clone(),
            backend_principal: r
                .backend_principal
                .clone()
                .unwrap_or_else(|| r.principal.clone()),
            forwarding: forwarding(r.port_forwarding, r.remote_forwarding, r.agent_forwarding),
            lifetimes: r.lifetimes(),
        });
    }

    match (grammar, ssh, backend) {
        (Some(grammar), Some(ssh), Some(backend)) if problems.is_empty() => Ok(EdgeConfig {
            tls_listen,
            ssh_listen,
            admin_listen,
            token_plain_listen,
            drain_timeout: Duration::from_secs(raw.listen.drain_timeout_secs),
            tls,
            ssh,
            grammar,
            remotes,
            backend,
            routes: RouteTable::new(rules, remote_forwarding).with_lifetimes(
                raw.remotes
                    .iter()
                    .map(|(name, r)| (name.clone(), r.lifetimes()))
                    .collect(),
            ),
            tokens,
            preamble_timeout: Duration::from_secs(raw.token.preamble_timeout_secs.max(1)),
            token_replay_entries: raw
                .token
                .single_use
                .then_some(raw.token.replay_cache_entries),
            admission,
            listen_backlog: raw.listen.backlog.max(1),
            workers: raw.listen.workers,
            kill_revoked_sessions: raw.auth.kill_revoked_sessions,
            audit: match raw.audit.file.as_deref() {
                None => crate::audit::AuditSink::Off,
                Some(p) if p == Path::new("-") => crate::audit::AuditSink::Stdout,
                Some(p) => crate::audit::AuditSink::File(p.to_path_buf()),
            },
            admin_token,
            control_plane,
        }),
        _ => Err(ConfigError::Invalid(problems)),
    }
}

fn parse_addr(what: &str, value: Option<&str>, problems: &mut Vec<String>) -> Option<SocketAddr> {
    let value = value?;
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.push(format!(
                "{what}: \"{value}\" is not an address like 0.0.0.0:443 or [::]:22"
            ));
            None
        }
    }
}

/// Reads a PEM certificate chain and private key, naming the files in every problem.
/// Shared by the edge's and the issuer's TLS settings.
pub(crate) fn load_pem_pair(
    cert: &Path,
    key: &Path,
    problems: &mut Vec<String>,
) -> Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = std::fs::read(cert)
        .map_err(|e| format!("tls.cert_file {}: {e}", cert.display()))
        .and_then(|pem| {
            match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                Ok(c) if !c.is_empty() => Ok(c),
                _ => Err(format!(
                    "tls.cert_file {}: expected PEM certificates",
                    cert.display()
                )),
            }
        });
    let key = std::fs::read(key)
        .map_err(|e| format!("tls.key_file {}: {e}", key.display()))
        .and_then(|pem| match PrivateKeyDer::from_pem_slice(&pem) {
            Ok(k) => Ok(k),
            _ => Err(format!(
                "tls.key_file {}: expected a PEM private key",
                key.display()
            )),
        });
    match (chain, key) {
        (Ok(chain), Ok(key)) => Some((chain, key)),
        (chain, key) => {
            problems.extend(chain.err());
            problems.extend(key.err());
            None
        }
    }
}

fn load_tls(
    cert: &Path,
    key: &Path,
    timeout_secs: u64,
    problems: &mut Vec<String>,
) -> Option<TlsSettings> {
    let (cert_chain, key) = load_pem_pair(cert, key, problems)?;
    let handshake_timeout = Duration::from_secs(if timeout_secs == 0 { 10 } else { timeout_secs });
    Some(TlsSettings {
        cert_chain,
        key,
        handshake_timeout,
    })
}

fn load_private_key(what: &str, path: &Path, problems: &mut Vec<String>) -> Option<PrivateKey> {
    match russh::keys::load_secret_key(path, None) {
        Ok(key) => Some(key),
        Err(e) => {
            problems.push(format!(
                "{what} {}: not a readable unencrypted OpenSSH private key ({e})",
                path.display()
            ));
            None
        }
    }
}

fn validate_ssh(raw: &RawSsh, problems: &mut Vec<String>) -> Option<SshSettings> {
    let mut host_keys = Vec::new();
    if raw.host_key_files.is_empty() {
        problems.push("ssh.host_key_files: at least one host key is required".into());
    }
    for path in &raw.host_key_files {
        host_keys.extend(load_private_key("ssh.host_key_files", path, problems));
    }
    let mut host_certificates = Vec::new();
    for path in &raw.host_certificate_files {
        match russh::keys::load_openssh_certificate(path) {
            Ok(c) => host_certificates.push(c),
            Err(e) => problems.push(format!(
                "ssh.host_certificate_files {}: {e}",
                path.display()
            )),
        }
    }
    if raw.window_size < 64 * 1024 {
        problems.push(format!(
            "ssh.window_size: {} is below the 65536-byte minimum",
            raw.window_size
        ));
    }
    if !(4096..=256 * 1024).contains(&raw.max_packet_size) {
        problems.push(format!(
            "ssh.max_packet_size: {} is outside 4096..=262144",
            raw.max_packet_size
        ));
    }
    if raw.login_grace_secs == 0 {
        problems.push("ssh.login_grace_secs: must be at least 1".into());
    }
    Some(SshSettings {
        host_keys,
        host_certificates,
        window_size: raw.window_size,
        max_packet_size: raw.max_packet_size,
        keepalive_interval: (raw.keepalive_interval_secs > 0)
            .then(|| Duration::from_secs(raw.keepalive_interval_secs)),
        keepalive_max: raw.keepalive_max.max(1),
        login_grace: Duration::from_secs(raw.login_grace_secs),
        max_auth_attempts: raw.max_auth_attempts.max(1),
    })
}

fn validate_tokens(
    raw: &RawConfig,
    problems: &mut Vec<String>,
) -> HashMap<String, Arc<TokenPolicy>> {
    let mut seen_kids = HashSet::new();
    let mut tokens = HashMap::new();
    for (name, remote) in &raw.remotes {
        let mut keys = Vec::new();
        for (i, key) in remote.token_keys.iter().enumerate() {
            if !seen_kids.insert(key.kid.clone()) {
                problems.push(format!(
                    "remotes.{name}.token_keys[{i}].kid: \"{}\" is used twice; kids must be unique",
                    key.kid
                ));
            }
            match TokenKey::from_pem(&key.kid, &key.public_key) {
                Ok(k) => keys.push(k),
                Err(e) => problems.push(format!(
                    "remotes.{name}.token_keys[{i}].public_key (kid {:?}): {e}",
                    key.kid
                )),
            }
        }
        if !keys.is_empty() {
            let policy = TokenPolicy {
                keys,
                issuer: raw.token.issuer.clone(),
                audience: raw.token.audience.clone(),
                max_clock_skew_secs: raw.auth.max_clock_skew_secs,
                max_lifetime_secs: raw.token.max_lifetime_secs,
            };
            tokens.insert(name.clone(), Arc::new(policy));
        }
    }
    tokens
}

/// Forwarding switches as configured; an absent switch allows.
fn forwarding(local: Option<bool>, remote: Option<bool>, agent: Option<bool>) -> Forwarding {
    Forwarding {
        local: local.unwrap_or(true),
        remote: remote.unwrap_or(true),
        agent: agent.unwrap_or(true),
    }
}
