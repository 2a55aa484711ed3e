//! The signing API for one workload: `ssh-edge sign HOST` keeps a fresh user certificate where
//! the managed `~/.ssh/config` block points ssh; `ssh-edge connect --sign` asks for a front-B
//! token of its own ([`fresh_token`]), never stored, so concurrent connections cannot share one.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::http::{ApiClient, BaseUrl};
use super::{HelperError, Settings, load_settings, state_dir, write_private};
use crate::hostname::{self, HostGrammar, MODEL_KIND, TRAINING_JOB_KIND, Target};

/// Reuse a certificate that stays valid at least this long.
const MIN_REMAINING_SECS: u64 = 300;

#[derive(Debug, Clone)]
pub struct SignOptions {
    pub ssh_dir: PathBuf,
    /// The host as ssh got it (`%n`); files are named after it.
    pub host: String,
    /// Ask the API even when the cached certificate is still fresh.
    pub force: bool,
}

/// Parses `host` with the default kinds and the configured suffix; any remote label is
/// accepted here (the signing API decides what the key may sign).
fn parse(settings: &Settings, host: &str) -> Result<Target, HelperError> {
    let lower = host.trim_end_matches('.').to_ascii_lowercase();
    let remotes: Vec<String> = lower
        .strip_suffix(&format!(".{}", settings.suffix))
        .and_then(|w| w.split_once('.'))
        .map(|(_, remote)| vec![remote.to_string()])
        .unwrap_or_default();
    let kinds = hostname::default_kinds();
    let grammar = HostGrammar::new(&settings.suffix, &kinds, &remotes).map_err(|e| {
        HelperError::Host(format!(
            "settings suffix {:?} or host {host:?} is not usable: {e:?}",
            settings.suffix
        ))
    })?;
    grammar
        .parse_host(host)
        .map_err(|e| HelperError::Host(e.to_string()))
}

/// Valid-until of the cached certificate, if it parses.
fn cached_cert_expiry(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    russh::keys::Certificate::from_openssh(text.trim())
        .ok()
        .map(|c| c.valid_before())
}

fn error_message(body: &Value) -> String {
    ["error", "detail", "message"]
        .iter()
        .find_map(|k| body.get(k).and_then(Value::as_str))
        .unwrap_or("no error message")
        .to_string()
}

/// Refuses a host that could not be a workload name (it also names a file) before anything
/// reads settings or reaches the API.
fn check_host(host: &str) -> Result<(), HelperError> {
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(HelperError::Host(format!(
            "invalid host {host:?}: expected letters, digits, '-' and '.'"
        )));
    }
    Ok(())
}

/// Refreshes the certificate for `opts.host` unless the cached one is fresh. Returns true when
/// it asked the API. The token the API also returns is dropped: `connect --sign` fetches one
/// per connection.
pub async fn sign(opts: &SignOptions) -> Result<bool, HelperError> {
    let host = opts.host.as_str();
    check_host(host)?;
    let settings = load_settings(&opts.ssh_dir)?;
    let state = state_dir(&opts.ssh_dir);
    let cert_path = state.join("certs").join(format!("{host}-cert.pub"));
    let fresh = cached_cert_expiry(&cert_path)
        .is_some_and(|e| e > crate::time::unix_now() + MIN_REMAINING_SECS);
    if !opts.force && fresh {
        return Ok(false);
    }
    let body = request(&settings, &state, host).await?;
    let cert = answer_field(&body, host, "ssh_certificate")?;
    write_private(&cert_path, format!("{}\n", cert.trim()).as_bytes())?;
    Ok(true)
}

/// A new front-B token for `host`, for one connection: the signing API is asked every time (its
/// certificate is dropped; ssh reads the one `sign` cached).
///
/// # Errors
/// [`HelperError`] naming the API URL when it cannot be reached, or its refusal.
pub async fn fresh_token(
    settings: &Settings,
    ssh_dir: &Path,
    host: &str,
) -> Result<Vec<u8>, HelperError> {
    check_host(host)?;
    let body = request(settings, &state_dir(ssh_dir), host).await?;
    let jwt = answer_field(&body, host, "jwt")?.trim();
    if jwt.is_empty() {
        return Err(HelperError::Incomplete {
            host: host.to_string(),
            field: "jwt",
        });
    }
    Ok(jwt.as_bytes().to_vec())
}

fn answer_field<'a>(
    body: &'a Value,
    host: &str,
    field: &'static str,
) -> Result<&'a str, HelperError> {
    body.get(field)
        .and_then(Value::as_str)
        .ok_or(HelperError::Incomplete {
            host: host.to_string(),
            field,
        })
}

/// One sign request for `host` with the key `setup` made: the API's answer (certificate,
/// token, …) once it accepted.
async fn request(settings: &Settings, state: &Path, host: &str) -> Result<Value, HelperError> {
    let target = parse(settings, host)?;
    let pub_path = state.join("id_ed25519.pub");
    let public_key =
        std::fs::read_to_string(&pub_path).map_err(|e| super::file_err(&pub_path, e))?;
    let public_key = public_key.trim();
    let api = ApiClient::new(BaseUrl::parse(&settings.api)?, settings.ca_file.as_deref())?;
    let key = settings.api_key.as_str();
    let refused = |status: u16, body: &Value| HelperError::Refused {
        host: host.to_string(),
        status,
        message: error_message(body),
    };
    let field = |name: &str| target.field(name).unwrap_or_default().to_string();

    let (status, body) = match target.kind.as_str() {
        TRAINING_JOB_KIND => {
            let job = field("job_id");
            let (status, found) = api
                .post_json("/v1/training_jobs/search", key, &json!({ "job_id": job }))
                .await?;
            if status >= 400 {
                return Err(refused(status, &found));
            }
            let project = found
                .pointer("/training_jobs/0/training_project/id")
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_u64().map(|n| n.to_string()))
                })
                .ok_or(HelperError::Incomplete {
                    host: host.to_string(),
                    field: "training_jobs[0].training_project.id",
                })?;
            let path = format!("/v1/training_projects/{project}/jobs/{job}/ssh/sign");
            api.post_json(
                &path,
                key,
                &json!({ "public_key": public_key, "replica_id": field("node") }),
            )
            .await?
        }
        MODEL_KIND => {
            let path = format!(
                "/v1/models/{}/deployments/{}/ssh/sign",
                field("model_id"),
                field("deployment_id")
            );
            let mut body = json!({ "public_key": public_key });
            if let Some(replica) = target.field("replica_id") {
                body["replica_id"] = json!(replica);
            }
            api.post_json(&path, key, &body).await?
        }
        other => {
            return Err(HelperError::Host(format!(
                "the signing API has no endpoint for kind {other:?}"
            )));
        }
    };
    if status >= 400 {
        return Err(refused(status, &body));
    }
    Ok(body)
}
