//! The signing API's logic, without I/O: routing, API-key authentication, request validation,
//! workload ownership, and the certificate and token an accepted request gets.
//!
//! Ownership answers never leak another tenant's workloads: a job, model or deployment the
//! caller's tenant does not own is answered exactly like one that does not exist (404, same
//! message), by the search endpoint and by both sign endpoints alike.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_lc_rs::signature::EcdsaKeyPair;
use russh::keys::ssh_key::{PrivateKey, PublicKey};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::hostname::{self, MAX_LABEL, MAX_NAME};
use crate::text::escape_untrusted;

/// Largest request body accepted (bytes).
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// Longest job, project, model or deployment id.
pub(crate) const MAX_ID_LEN: usize = crate::hostname::MAX_LABEL;
/// Longest node or replica index (decimal digits): the edge's host-name bound.
pub(crate) const MAX_INDEX_DIGITS: usize = crate::hostname::MAX_NUM_DIGITS;
/// The remote name whose host names carry no remote label.
pub(crate) const DEFAULT_TENANT: &str = crate::hostname::DEFAULT_REMOTE;

/// Why a request was refused. `Display` is the `error` text sent to the client: it names the
/// thing and what was expected, and never echoes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("missing API key: expected header \"Authorization: Api-Key <key>\"")]
    MissingApiKey,
    #[error("invalid API key")]
    BadApiKey,
    #[error(
        "unknown path {path}: expected POST /v1/training_jobs/search, POST /v1/training_projects/<project_id>/jobs/<job_id>/ssh/sign or POST /v1/models/<model_id>/deployments/<deployment_id>/ssh/sign"
    )]
    UnknownPath { path: String },
    #[error("method {method} not allowed on {path}: expected POST")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body over {MAX_BODY} bytes")]
    BodyTooLarge,
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("request body is not the expected JSON object ({expected}): {detail}")]
    BadJson {
        expected: &'static str,
        detail: String,
    },
    #[error("Invalid {what} id: must be a valid hash id")]
    InvalidId { what: &'static str },
    #[error("Invalid replica id: must be a decimal index (at most {MAX_INDEX_DIGITS} digits)")]
    InvalidReplica,
    #[error("missing replica_id: a training job node index is required")]
    MissingReplica,
    #[error(
        "workload host name {host} is longer than DNS allows ({MAX_LABEL} bytes per label, {MAX_NAME} in all)"
    )]
    HostTooLong { host: String },
    #[error(
        "public_key is not an OpenSSH public key (expected one line like \"ssh-ed25519 AAAA... comment\"): {detail}"
    )]
    BadPublicKey { detail: String },
    #[error("training job {job_id} not found")]
    JobNotFound { job_id: String },
    #[error("training job {job_id} not found in training project {project_id}")]
    JobNotInProject { job_id: String, project_id: String },
    #[error("model {model_id} deployment {deployment_id} not found")]
    DeploymentNotFound {
        model_id: String,
        deployment_id: String,
    },
    #[error("internal error while signing; the issuer log has the details")]
    Internal,
}

impl ApiError {
    /// The HTTP status code of this error.
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::MissingApiKey | Self::BadApiKey => 401,
            Self::UnknownPath { .. }
            | Self::JobNotFound { .. }
            | Self::JobNotInProject { .. }
            | Self::DeploymentNotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::BodyTimeout => 408,
            Self::BodyTooLarge => 413,
            Self::Internal => 500,
            _ => 400,
        }
    }
}

/// One API key of a tenant, stored as the SHA-256 of the key.
#[derive(Clone)]
pub struct ApiKey {
    pub id: String,
    pub sha256: [u8; 32],
}

/// A tenant (= the edge's remote): its keys, signing material and the workloads it owns.
pub struct Tenant {
    pub name: String,
    pub api_keys: Vec<ApiKey>,
    pub user_ca: PrivateKey,
    pub token_key: EcdsaKeyPair,
    pub token_kid: String,
    /// job id → project id.
    pub training_jobs: HashMap<String, String>,
    /// model id → deployment ids.
    pub models: HashMap<String, HashSet<String>>,
}

/// Settings shared by every tenant.
#[derive(Debug, Clone)]
pub struct IssueSettings {
    pub proxy_address: String,
    pub suffix: String,
    pub cert_validity: Duration,
    pub token_lifetime: Duration,
    pub token_issuer: String,
    pub token_audience: String,
}

/// Who is calling: a tenant and one of its API keys.
#[derive(Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub tenant: &'a Tenant,
    pub api_key_id: &'a str,
}

/// The endpoints, with their path parameters (not yet validated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    SearchJobs,
    SignTraining {
        project_id: String,
        job_id: String,
    },
    SignModel {
        model_id: String,
        deployment_id: String,
    },
}

/// Maps method and path (without query) to an endpoint.
pub(crate) fn route(method: &str, path: &str) -> Result<Route, ApiError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let found = match segments.as_slice() {
        ["v1", "training_jobs", "search"] => Some(Route::SearchJobs),
        [
            "v1",
            "training_projects",
            project,
            "jobs",
            job,
            "ssh",
            "sign",
        ] => Some(Route::SignTraining {
            project_id: (*project).into(),
            job_id: (*job).into(),
        }),
        [
            "v1",
            "models",
            model,
            "deployments",
            deployment,
            "ssh",
            "sign",
        ] => Some(Route::SignModel {
            model_id: (*model).into(),
            deployment_id: (*deployment).into(),
        }),
        _ => None,
    };
    let Some(found) = found else {
        return Err(ApiError::UnknownPath {
            path: crate::text::quote_untrusted(path, 200),
        });
    };
    if method != "POST" {
        return Err(ApiError::MethodNotAllowed {
            method: crate::text::quote_untrusted(method, 20),
            path: crate::text::quote_untrusted(path, 200),
        });
    }
    Ok(found)
}

/// SHA-256 of an API key, as stored in the configuration.
pub(crate) fn digest_api_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The key in an `Authorization: Api-Key <key>` header value.
pub(crate) fn api_key_from_header(value: Option<&[u8]>) -> Result<&str, ApiError> {
    crate::http_auth::credential(value, "Api-Key").ok_or(ApiError::MissingApiKey)
}

/// Finds the tenant and key id for a presented API key. Every configured digest is compared,
/// each in constant time, so timing does not tell which key (or how much of one) matched.
pub(crate) fn authenticate<'a>(
    tenants: &'a [Tenant],
    presented: &str,
) -> Result<Caller<'a>, ApiError> {
    let digest = digest_api_key(presented);
    let mut found = None;
    for tenant in tenants {
        for key in &tenant.api_keys {
            let equal =
                aws_lc_rs::constant_time::verify_slices_are_equal(&key.sha256, &digest).is_ok();
            if equal && found.is_none() {
                found = Some(Caller {
                    tenant,
                    api_key_id: &key.id,
                });
            }
        }
    }
    found.ok_or(ApiError::BadApiKey)
}

/// A job, project, model or deployment id: 1 to 63 of `a-z0-9`.
pub(crate) fn is_hash_id(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A node or replica index: 1 to 9 decimal digits.
pub(crate) fn is_index(s: &str) -> bool {
    (1..=MAX_INDEX_DIGITS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn check_id(what: &'static str, s: &str) -> Result<(), ApiError> {
    if is_hash_id(s) {
        Ok(())
    } else {
        Err(ApiError::InvalidId { what })
    }
}

/// A replica or node index as the helpers send it: a JSON string or number.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Index {
    Text(String),
    Number(u64),
}

impl Index {
    fn validated(&self) -> Result<String, ApiError> {
        let text = match self {
            Self::Text(s) => s.clone(),
            Self::Number(n) => n.to_string(),
        };
        if is_index(&text) {
            Ok(text)
        } else {
            Err(ApiError::InvalidReplica)
        }
    }
}

#[derive(Deserialize)]
struct SearchBody {
    job_id: Value,
}

#[derive(Deserialize)]
struct SignBody {
    public_key: String,
    #[serde(default)]
    replica_id: Option<Index>,
}

fn bad_json(expected: &'static str, e: &serde_json::Error) -> ApiError {
    ApiError::BadJson {
        expected,
        detail: escape_untrusted(&e.to_string(), 200),
    }
}

/// The workload a certificate is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workload {
    TrainingJob {
        project_id: String,
        job_id: String,
        node: String,
    },
    Model {
        model_id: String,
        deployment_id: String,
        replica: Option<String>,
    },
}

impl Workload {
    /// The certificate principal: the job id or the model id.
    pub(crate) fn principal(&self) -> &str {
        match self {
            Self::TrainingJob { job_id, .. } => job_id,
            Self::Model { model_id, .. } => model_id,
        }
    }

    /// The workload's host name (see [`crate::hostname`]'s formats); no remote label for the
    /// default tenant.
    pub(crate) fn host(&self, tenant: &str, suffix: &str) -> String {
        let label = match self {
            Self::TrainingJob { job_id, node, .. } => hostname::training_job_label(job_id, node),
            Self::Model {
                model_id,
                deployment_id,
                replica,
            } => hostname::model_label(model_id, deployment_id, replica.as_deref()),
        };
        hostname::full_host(&label, tenant, suffix)
    }
}

/// A validated sign request.
#[derive(Debug, Clone)]
pub struct SignRequest {
    pub workload: Workload,
    pub public_key: PublicKey,
}

/// Validates `POST /v1/training_jobs/search`'s body; returns the job id.
pub(crate) fn parse_search(body: &[u8]) -> Result<String, ApiError> {
    const EXPECTED: &str = "{\"job_id\": \"<job id>\"}";
    let parsed: SearchBody = serde_json::from_slice(body).map_err(|e| bad_json(EXPECTED, &e))?;
    match parsed.job_id {
        Value::String(id) if is_hash_id(&id) => Ok(id),
        _ => Err(ApiError::InvalidId { what: "job" }),
    }
}

/// Validates a sign request for `route` (a sign route) and its body.
pub fn parse_sign(route: &Route, body: &[u8]) -> Result<SignRequest, ApiError> {
    const EXPECTED: &str =
        "{\"public_key\": \"<OpenSSH public key>\", \"replica_id\": \"<index>\"}";
    match route {
        Route::SignTraining { project_id, job_id } => {
            check_id("project", project_id)?;
            check_id("job", job_id)?;
        }
        Route::SignModel {
            model_id,
            deployment_id,
        } => {
            check_id("model", model_id)?;
            check_id("deployment", deployment_id)?;
        }
        Route::SearchJobs => return Err(ApiError::Internal),
    }
    let parsed: SignBody = serde_json::from_slice(body).map_err(|e| bad_json(EXPECTED, &e))?;
    let replica = parsed.replica_id.map(|r| r.validated()).transpose()?;
    let workload = match route {
        Route::SignTraining { project_id, job_id } => Workload::TrainingJob {
            project_id: project_id.clone(),
            job_id: job_id.clone(),
            node: replica.ok_or(ApiError::MissingReplica)?,
        },
        Route::SignModel {
            model_id,
            deployment_id,
        } => Workload::Model {
            model_id: model_id.clone(),
            deployment_id: deployment_id.clone(),
            replica,
        },
        Route::SearchJobs => return Err(ApiError::Internal),
    };
    let public_key =
        PublicKey::from_openssh(parsed.public_key.trim()).map_err(|e| ApiError::BadPublicKey {
            detail: escape_untrusted(&e.to_string(), 200),
        })?;
    Ok(SignRequest {
        workload,
        public_key,
    })
}

/// The search answer for `job_id` if the caller's tenant owns it.
pub(crate) fn search(tenant: &Tenant, job_id: &str) -> Result<Value, ApiError> {
    let project = tenant
        .training_jobs
        .get(job_id)
        .ok_or_else(|| ApiError::JobNotFound {
            job_id: job_id.into(),
        })?;
    Ok(json!({
        "training_jobs": [{ "id": job_id, "training_project": { "id": project } }]
    }))
}

/// Checks that the caller's tenant owns the workload (unknown and foreign look the same).
pub(crate) fn authorize(tenant: &Tenant, workload: &Workload) -> Result<(), ApiError> {
    match workload {
        Workload::TrainingJob {
            project_id, job_id, ..
        } => match tenant.training_jobs.get(job_id) {
            Some(p) if p == project_id => Ok(()),
            _ => Err(ApiError::JobNotInProject {
                job_id: job_id.clone(),
                project_id: project_id.clone(),
            }),
        },
        Workload::Model {
            model_id,
            deployment_id,
            ..
        } => match tenant.models.get(model_id) {
            Some(d) if d.contains(deployment_id) => Ok(()),
            _ => Err(ApiError::DeploymentNotFound {
                model_id: model_id.clone(),
                deployment_id: deployment_id.clone(),
            }),
        },
    }
}
