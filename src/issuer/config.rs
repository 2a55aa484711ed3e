//! The issuer's configuration: built-in defaults, then a TOML file, validated into typed
//! settings with every problem listed at once. Secrets (CA keys, token keys) are loaded here
//! and never printed; API keys are only ever stored as SHA-256 digests.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use russh::keys::ssh_key::PrivateKey;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use super::api::{ApiKey, DEFAULT_TENANT, IssueSettings, Tenant, is_hash_id};
use super::workload::{RawSpec, Spec, WorkloadId, WorkloadKey, validate_spec};
use crate::hostname::is_dns_label;

/// Why the issuer configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum IssuerConfigError {
    #[error("invalid issuer configuration ({} problem{}):\n  - {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, .0.join("\n  - "))]
    Invalid(Vec<String>),
}

/// The file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawIssuerConfig {
    /// Address the API listens on, e.g. `0.0.0.0:8443`.
    pub listen: String,
    pub tls: RawIssuerTls,
    /// `<host>:<port>` of the edge's TLS front, returned to the helpers.
    pub proxy_address: String,
    /// Host name suffix (the edge's `hosts.suffix`).
    pub suffix: String,
    pub certificate: RawCertificate,
    pub token: RawIssuerToken,
    pub control_plane: RawControlPlane,
    pub tenants: Vec<RawTenant>,
}

impl Default for RawIssuerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            tls: RawIssuerTls::default(),
            proxy_address: String::new(),
            suffix: crate::hostname::DEFAULT_SUFFIX.into(),
            certificate: RawCertificate::default(),
            token: RawIssuerToken::default(),
            control_plane: RawControlPlane::default(),
            tenants: Vec::new(),
        }
    }
}

/// HTTPS when both are set; plain HTTP when neither is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawIssuerTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCertificate {
    /// Lifetime of issued user certificates, seconds (they start 60 s in the past).
    pub validity_secs: u64,
}

impl Default for RawCertificate {
    fn default() -> Self {
        Self {
            validity_secs: 3600,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawIssuerToken {
    /// `iss` claim; must equal the edge's `token.issuer`.
    pub issuer: String,
    /// `aud` claim; must equal the edge's `token.audience`.
    pub audience: String,
    /// `exp - iat`, seconds; at most the edge's `token.max_lifetime_secs`.
    pub lifetime_secs: u64,
}

impl Default for RawIssuerToken {
    fn default() -> Self {
        Self {
            issuer: "ssh-edge".into(),
            audience: "ssh-edge".into(),
            lifetime_secs: crate::auth::token::DEFAULT_TOKEN_LIFETIME_SECS,
        }
    }
}

/// The control plane the edges ask before connecting; each side is off until its token is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawControlPlane {
    /// Hex SHA-256 of the bearer token the edges present on `/v1/edge/...`.
    pub edge_token_sha256: Option<String>,
    /// Hex SHA-256 of the bearer token for `/v1/admin/...`.
    pub admin_token_sha256: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTenant {
    /// The edge's remote name; `default` = host names without a remote label.
    pub name: String,
    pub api_keys: Vec<RawApiKey>,
    /// OpenSSH private key (unencrypted) of the tenant's user CA.
    pub user_ca_key_file: Option<PathBuf>,
    /// DER ECDSA P-256 private key (PKCS#8 or SEC1) signing the tenant's tokens.
    pub token_key_file: Option<PathBuf>,
    /// JWT `kid` of that key, as configured at the edge.
    pub token_kid: String,
    pub training_jobs: Vec<RawTrainingJob>,
    pub models: Vec<RawModel>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawApiKey {
    pub id: String,
    /// Lowercase or uppercase hex SHA-256 of the key (`printf %s KEY | sha256sum`).
    pub sha256: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTrainingJob {
    pub job_id: String,
    pub project_id: String,
    /// `on_startup` (default), `on_demand` or `on_failure`.
    pub trigger: Option<String>,
    /// Initial state; default from the trigger.
    pub state: Option<String>,
    /// Shown to users while the job is stopped.
    pub message: Option<String>,
    pub session_expires_at: Option<u64>,
    /// `sh -c` command run once per activation.
    pub on_activate: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawModel {
    pub model_id: String,
    pub deployments: Vec<String>,
    /// As for training jobs; each deployment keeps its own state.
    pub trigger: Option<String>,
    pub state: Option<String>,
    pub message: Option<String>,
    pub session_expires_at: Option<u64>,
    pub on_activate: Option<String>,
}

impl RawTrainingJob {
    fn spec(&self) -> RawSpec<'_> {
        RawSpec {
            trigger: self.trigger.as_deref(),
            state: self.state.as_deref(),
            message: self.message.as_deref(),
            session_expires_at: self.session_expires_at,
            on_activate: self.on_activate.as_deref(),
        }
    }
}

impl RawModel {
    fn spec(&self) -> RawSpec<'_> {
        RawSpec {
            trigger: self.trigger.as_deref(),
            state: self.state.as_deref(),
            message: self.message.as_deref(),
            session_expires_at: self.session_expires_at,
            on_activate: self.on_activate.as_deref(),
        }
    }
}

/// TLS material for HTTPS.
pub struct IssuerTls {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// The validated configuration.
pub struct IssuerConfig {
    pub listen: SocketAddr,
    pub tls: Option<IssuerTls>,
    pub settings: IssueSettings,
    pub tenants: Vec<Tenant>,
    pub control: ControlConfig,
}

/// The control plane's validated settings: token digests (`None` = that side is off) and every
/// configured workload's activation settings.
pub struct ControlConfig {
    pub edge_token_sha256: Option<[u8; 32]>,
    pub admin_token_sha256: Option<[u8; 32]>,
    pub workloads: Vec<(WorkloadKey, Spec)>,
}

/// Reads defaults, then the TOML `file`.
pub(crate) fn load_raw(file: &Path) -> Result<RawIssuerConfig, IssuerConfigError> {
    if !file.exists() {
        return Err(IssuerConfigError::Invalid(vec![format!(
            "config file {} does not exist",
            file.display()
        )]));
    }
    let figment = Figment::from(Serialized::defaults(RawIssuerConfig::default()))
        .merge(Toml::file_exact(file));
    crate::config::extract_all(&figment).map_err(IssuerConfigError::Invalid)
}

/// `load_raw` followed by `validate`.
pub fn load(file: &Path) -> Result<IssuerConfig, IssuerConfigError> {
    validate(&load_raw(file)?)
}

/// Turns the raw configuration into typed settings, listing every problem found.
pub fn validate(raw: &RawIssuerConfig) -> Result<IssuerConfig, IssuerConfigError> {
    let mut problems = Vec::new();
    let listen = raw
        .listen
        .parse::<SocketAddr>()
        .map_err(|e| {
            problems.push(format!(
                "listen: \"{}\" is not an address like 0.0.0.0:8443: {e}",
                raw.listen
            ))
        })
        .ok();
    let tls = match (&raw.tls.cert_file, &raw.tls.key_file) {
        (Some(cert), Some(key)) => load_tls(cert, key, &mut problems),
        (None, None) => None,
        _ => {
            problems.push("tls: set both tls.cert_file and tls.key_file, or neither".into());
            None
        }
    };
    if !proxy_address_ok(&raw.proxy_address) {
        problems.push(format!(
            "proxy_address: \"{}\" is not <host>:<port> (the edge's TLS front, e.g. edge.example:443)",
            raw.proxy_address
        ));
    }
    let suffix = raw.suffix.trim_end_matches('.').to_ascii_lowercase();
    if suffix.is_empty() || suffix.len() > 200 || !suffix.split('.').all(is_dns_label) {
        problems.push(format!(
            "suffix: \"{}\" is not a DNS name like ssh.baseten.co",
            raw.suffix
        ));
    }
    if raw.certificate.validity_secs == 0 || raw.certificate.validity_secs > 31 * 86_400 {
        problems.push(format!(
            "certificate.validity_secs: {} is not between 1 and 2678400 (31 days)",
            raw.certificate.validity_secs
        ));
    }
    if raw.token.lifetime_secs == 0 || raw.token.lifetime_secs > 86_400 {
        problems.push(format!(
            "token.lifetime_secs: {} is not between 1 and 86400",
            raw.token.lifetime_secs
        ));
    }
    for (field, value) in [
        ("token.issuer", &raw.token.issuer),
        ("token.audience", &raw.token.audience),
    ] {
        if value.is_empty() {
            problems.push(format!("{field}: empty, expected e.g. \"ssh-edge\""));
        }
    }
    let mut workloads = Vec::new();
    let tenants = validate_tenants(&raw.tenants, &mut workloads, &mut problems);
    let edge_token_sha256 = token_digest(
        "control_plane.edge_token_sha256",
        raw.control_plane.edge_token_sha256.as_deref(),
        &mut problems,
    );
    let admin_token_sha256 = token_digest(
        "control_plane.admin_token_sha256",
        raw.control_plane.admin_token_sha256.as_deref(),
        &mut problems,
    );
    if edge_token_sha256.is_some() && edge_token_sha256 == admin_token_sha256 {
        problems.push(
            "control_plane.admin_token_sha256: equals edge_token_sha256; use a separate admin token so an edge cannot change workload states".into(),
        );
    }
    if !problems.is_empty() {
        return Err(IssuerConfigError::Invalid(problems));
    }
    let (Some(listen), tls) = (listen, tls) else {
        return Err(IssuerConfigError::Invalid(vec!["listen: invalid".into()]));
    };
    Ok(IssuerConfig {
        listen,
        tls,
        settings: IssueSettings {
            proxy_address: raw.proxy_address.clone(),
            suffix,
            cert_validity: Duration::from_secs(raw.certificate.validity_secs),
            token_lifetime: Duration::from_secs(raw.token.lifetime_secs),
            token_issuer: raw.token.issuer.clone(),
            token_audience: raw.token.audience.clone(),
        },
        tenants,
        control: ControlConfig {
            edge_token_sha256,
            admin_token_sha256,
            workloads,
        },
    })
}

/// A bearer-token digest: 64 hex digits, or unset.
fn token_digest(field: &str, value: Option<&str>, problems: &mut Vec<String>) -> Option<[u8; 32]> {
    let value = value?;
    match hex::decode(value.trim()) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut digest = [0u8; 32];
            digest.copy_from_slice(&bytes);
            Some(digest)
        }
        _ => {
            problems.push(format!(
                "{field}: expected 64 hex digits (printf %s TOKEN | sha256sum)"
            ));
            None
        }
    }
}

/// `HOST:PORT` the helpers dial (an IPv6 literal in brackets): a port is required, and no
/// userinfo.
pub(super) fn proxy_address_ok(address: &str) -> bool {
    address
        .parse::<hyper::http::uri::Authority>()
        .is_ok_and(|a| {
            !a.host().is_empty()
                && !a.as_str().contains('@')
                && matches!(crate::uri::explicit_port(&a), Ok(Some(_)))
        })
}

fn validate_tenants(
    raw: &[RawTenant],
    workloads: &mut Vec<(WorkloadKey, Spec)>,
    problems: &mut Vec<String>,
) -> Vec<Tenant> {
    if raw.is_empty() {
        problems.push("tenants: none configured, expected at least one [[tenants]]".into());
    }
    let mut names = HashSet::new();
    let mut key_ids = HashSet::new();
    let mut digests = HashSet::new();
    let mut kids = HashSet::new();
    let mut tenants = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let at = format!("tenants[{i}] ({})", t.name);
        if !is_dns_label(&t.name) {
            problems.push(format!(
                "{at}.name: expected the edge's remote name (a DNS label of a-z0-9-) or \"{DEFAULT_TENANT}\""
            ));
        } else if !names.insert(t.name.as_str()) {
            problems.push(format!("{at}.name: duplicate tenant"));
        }
        if t.api_keys.is_empty() {
            problems.push(format!("{at}.api_keys: empty, nobody could call the API"));
        }
        let mut api_keys = Vec::new();
        for (j, k) in t.api_keys.iter().enumerate() {
            if k.id.is_empty() {
                problems.push(format!("{at}.api_keys[{j}].id: empty"));
            } else if !key_ids.insert(k.id.as_str()) {
                problems.push(format!(
                    "{at}.api_keys[{j}].id: \"{}\" is used twice (ids are unique across tenants)",
                    k.id
                ));
            }
            match hex::decode(k.sha256.trim()) {
                Ok(bytes) if bytes.len() == 32 => {
                    let mut sha256 = [0u8; 32];
                    sha256.copy_from_slice(&bytes);
                    if !digests.insert(sha256) {
                        problems.push(format!(
                            "{at}.api_keys[{j}].sha256: the same key hash is configured twice"
                        ));
                    }
                    api_keys.push(ApiKey {
                        id: k.id.clone(),
                        sha256,
                    });
                }
                _ => problems.push(format!(
                    "{at}.api_keys[{j}].sha256: expected 64 hex digits (sha256 of the key)"
                )),
            }
        }
        let user_ca = load_ca(&at, t.user_ca_key_file.as_deref(), problems);
        let token_key = load_token_key(&at, t.token_key_file.as_deref(), problems);
        if t.token_kid.is_empty() {
            problems.push(format!(
                "{at}.token_kid: empty, expected the kid the edge lists for this key"
            ));
        } else if !kids.insert(t.token_kid.as_str()) {
            problems.push(format!("{at}.token_kid: \"{}\" is used twice", t.token_kid));
        }
        let mut training_jobs = HashMap::new();
        for (j, job) in t.training_jobs.iter().enumerate() {
            let jat = format!("{at}.training_jobs[{j}]");
            if !is_hash_id(&job.job_id) {
                problems.push(format!("{jat}.job_id: expected 1-63 of a-z0-9"));
            }
            if !is_hash_id(&job.project_id) {
                problems.push(format!("{jat}.project_id: expected 1-63 of a-z0-9"));
            }
            if training_jobs
                .insert(job.job_id.clone(), job.project_id.clone())
                .is_some()
            {
                problems.push(format!("{jat}.job_id: \"{}\" listed twice", job.job_id));
            }
            let spec = validate_spec(&jat, job.spec(), problems);
            let id = WorkloadId::TrainingJob {
                job_id: job.job_id.clone(),
            };
            workloads.push((key(&t.name, id), spec));
        }
        let mut models: HashMap<String, HashSet<String>> = HashMap::new();
        for (j, m) in t.models.iter().enumerate() {
            let mat = format!("{at}.models[{j}]");
            if !is_hash_id(&m.model_id) {
                problems.push(format!("{mat}.model_id: expected 1-63 of a-z0-9"));
            }
            if m.deployments.is_empty() {
                problems.push(format!(
                    "{mat}.deployments: empty, expected at least one deployment id"
                ));
            }
            let spec = validate_spec(&mat, m.spec(), problems);
            for (k, d) in m.deployments.iter().enumerate() {
                if !is_hash_id(d) {
                    problems.push(format!("{mat}.deployments[{k}]: expected 1-63 of a-z0-9"));
                }
                let id = WorkloadId::Model {
                    model_id: m.model_id.clone(),
                    deployment_id: d.clone(),
                };
                workloads.push((key(&t.name, id), spec.clone()));
            }
            if models.contains_key(&m.model_id) {
                problems.push(format!("{mat}.model_id: \"{}\" listed twice", m.model_id));
            }
            models
                .entry(m.model_id.clone())
                .or_default()
                .extend(m.deployments.iter().cloned());
        }
        if let (Some(user_ca), Some(token_key)) = (user_ca, token_key) {
            tenants.push(Tenant {
                name: t.name.clone(),
                api_keys,
                user_ca,
                token_key,
                token_kid: t.token_kid.clone(),
                training_jobs,
                models,
            });
        }
    }
    tenants
}

fn key(tenant: &str, id: WorkloadId) -> WorkloadKey {
    WorkloadKey {
        tenant: tenant.to_string(),
        id,
    }
}

fn load_ca(at: &str, path: Option<&Path>, problems: &mut Vec<String>) -> Option<PrivateKey> {
    let Some(path) = path else {
        problems.push(format!(
            "{at}.user_ca_key_file: missing, expected the tenant's user CA (OpenSSH private key)"
        ));
        return None;
    };
    match PrivateKey::read_openssh_file(path) {
        Ok(k) if k.is_encrypted() => {
            problems.push(format!(
                "{at}.user_ca_key_file {}: encrypted, expected an unencrypted OpenSSH private key",
                path.display()
            ));
            None
        }
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(format!(
                "{at}.user_ca_key_file {}: expected an OpenSSH private key: {e}",
                path.display()
            ));
            None
        }
    }
}

fn load_token_key(
    at: &str,
    path: Option<&Path>,
    problems: &mut Vec<String>,
) -> Option<EcdsaKeyPair> {
    let Some(path) = path else {
        problems.push(format!(
            "{at}.token_key_file: missing, expected a DER ECDSA P-256 private key (PKCS#8 or SEC1)"
        ));
        return None;
    };
    let result = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|der| {
            EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                .map_err(|_| "expected a DER ECDSA P-256 private key (PKCS#8 or SEC1)".to_string())
        });
    match result {
        Ok(k) => Some(k),
        Err(e) => {
            problems.push(format!("{at}.token_key_file {}: {e}", path.display()));
            None
        }
    }
}

fn load_tls(cert: &Path, key: &Path, problems: &mut Vec<String>) -> Option<IssuerTls> {
    let (cert_chain, key) = crate::config::load_pem_pair(cert, key, problems)?;
    Some(IssuerTls { cert_chain, key })
}
