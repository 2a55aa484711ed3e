//! Workload activation, without I/O: host-name parsing (the inverse of
//! [`Workload::host`](super::api::Workload::host)), triggers and states, the messages users see,
//! the status JSON the edges read, and validation of the per-workload config fields.
//!
//! State is kept per workload, not per host: one training job (all its nodes) or one model
//! deployment (all its replicas), because that is the unit an `on_activate` command wakes.

use serde_json::{Value, json};

use super::api::{DEFAULT_TENANT, Workload, is_hash_id, is_index};
use crate::hostname::{self, fits_dns, is_dns_label};

/// Longest `message` accepted (bytes): it ends up in an SSH disconnect message.
pub(crate) const MAX_MESSAGE: usize = 1024;

/// What makes a workload's SSH session available. The variants read as the config values
/// they parse from (`on_startup`, `on_demand`, `on_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)]
pub enum Trigger {
    /// Up from the start (the default).
    OnStartup,
    /// Asleep until someone connects (or signs); connecting wakes it.
    OnDemand,
    /// Opens only if the workload fails (a debugging hold).
    OnFailure,
}

impl Trigger {
    pub(crate) const NAMES: &'static str = "on_startup, on_demand, on_failure";

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "on_startup" => Some(Self::OnStartup),
            "on_demand" => Some(Self::OnDemand),
            "on_failure" => Some(Self::OnFailure),
            _ => None,
        }
    }

    /// The state a workload starts in when the config names none.
    pub(crate) fn initial_state(self) -> State {
        match self {
            Self::OnStartup => State::Running,
            Self::OnDemand => State::Activatable,
            Self::OnFailure => State::Stopped,
        }
    }
}

/// A known workload's state (`unknown` is not a state a workload can be in, so it is not here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Activatable,
    Starting,
    Stopped,
}

impl State {
    pub(crate) const NAMES: &'static str = "running, activatable, starting, stopped";

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "running" => Some(Self::Running),
            "activatable" => Some(Self::Activatable),
            "starting" => Some(Self::Starting),
            "stopped" => Some(Self::Stopped),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Activatable => "activatable",
            Self::Starting => "starting",
            Self::Stopped => "stopped",
        }
    }
}

/// The unit whose state is kept: a training job or a model deployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkloadId {
    TrainingJob {
        job_id: String,
    },
    Model {
        model_id: String,
        deployment_id: String,
    },
}

impl WorkloadId {
    /// How messages name it: `training job <id>` or `model <m> deployment <d>`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::TrainingJob { job_id } => format!("training job {job_id}"),
            Self::Model {
                model_id,
                deployment_id,
            } => format!("model {model_id} deployment {deployment_id}"),
        }
    }

    /// `SSH_EDGE_WORKLOAD` for `on_activate`: the job id, or `<model>-<deployment>`.
    pub(crate) fn env_name(&self) -> String {
        match self {
            Self::TrainingJob { job_id } => job_id.clone(),
            Self::Model {
                model_id,
                deployment_id,
            } => format!("{model_id}-{deployment_id}"),
        }
    }
}

impl From<&Workload> for WorkloadId {
    fn from(w: &Workload) -> Self {
        match w {
            Workload::TrainingJob { job_id, .. } => Self::TrainingJob {
                job_id: job_id.clone(),
            },
            Workload::Model {
                model_id,
                deployment_id,
                ..
            } => Self::Model {
                model_id: model_id.clone(),
                deployment_id: deployment_id.clone(),
            },
        }
    }
}

/// A workload of one tenant: the key of the state table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadKey {
    pub tenant: String,
    pub id: WorkloadId,
}

/// Parses `training-job-<job>-<node>[.<tenant>].<suffix>` or
/// `model-<model>-<deployment>[-<replica>][.<tenant>].<suffix>` (`suffix` lowercase, without a
/// trailing dot). Like the edge, it ignores case and one trailing dot; everything else must fit
/// exactly, and a `default` label is refused because the default tenant's hosts carry none.
pub(crate) fn parse_host(host: &str, suffix: &str) -> Option<WorkloadKey> {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if !fits_dns(&host) {
        return None;
    }
    let rest = host.strip_suffix(suffix)?.strip_suffix('.')?;
    let (label, tenant) = match rest.split_once('.') {
        None => (rest, DEFAULT_TENANT),
        Some((label, tenant)) if tenant != DEFAULT_TENANT && is_dns_label(tenant) => {
            (label, tenant)
        }
        Some(_) => return None,
    };
    let id = if let Some(r) = label.strip_prefix(hostname::TRAINING_JOB_PREFIX) {
        let (job, node) = r.split_once('-')?;
        (is_hash_id(job) && is_index(node))
            .then(|| WorkloadId::TrainingJob { job_id: job.into() })?
    } else if let Some(r) = label.strip_prefix(hostname::MODEL_PREFIX) {
        let parts: Vec<&str> = r.split('-').collect();
        let (model, deployment, replica) = match parts.as_slice() {
            [m, d] => (*m, *d, None),
            [m, d, r] => (*m, *d, Some(*r)),
            _ => return None,
        };
        let ok = is_hash_id(model) && is_hash_id(deployment) && replica.is_none_or(is_index);
        ok.then(|| WorkloadId::Model {
            model_id: model.into(),
            deployment_id: deployment.into(),
        })?
    } else {
        return None;
    };
    Some(WorkloadKey {
        tenant: tenant.into(),
        id,
    })
}

/// Text shown to users: non-empty, bounded, without control characters (it is printed on
/// their terminal).
pub(crate) fn check_message(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("empty; omit it for the default text".into())
    } else if s.len() > MAX_MESSAGE {
        Err(format!("longer than {MAX_MESSAGE} bytes"))
    } else if s.chars().any(char::is_control) {
        Err("contains control characters (newlines included)".into())
    } else {
        Ok(())
    }
}

/// A workload's activation settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub trigger: Trigger,
    pub state: State,
    pub message: Option<String>,
    pub session_expires_at: Option<u64>,
    pub on_activate: Option<String>,
}

/// The activation fields of a `[[tenants.training_jobs]]` or `[[tenants.models]]` entry.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawSpec<'a> {
    pub trigger: Option<&'a str>,
    pub state: Option<&'a str>,
    pub message: Option<&'a str>,
    pub session_expires_at: Option<u64>,
    pub on_activate: Option<&'a str>,
}

/// Validates the activation fields of the entry at `at`, adding every problem to `problems`.
pub(crate) fn validate_spec(at: &str, raw: RawSpec<'_>, problems: &mut Vec<String>) -> Spec {
    let trigger = match raw.trigger {
        None => Trigger::OnStartup,
        Some(t) => Trigger::parse(t).unwrap_or_else(|| {
            problems.push(format!(
                "{at}.trigger: \"{t}\" is not one of {}",
                Trigger::NAMES
            ));
            Trigger::OnStartup
        }),
    };
    let state = match raw.state {
        None => trigger.initial_state(),
        Some(s) => State::parse(s).unwrap_or_else(|| {
            problems.push(format!(
                "{at}.state: \"{s}\" is not one of {}",
                State::NAMES
            ));
            trigger.initial_state()
        }),
    };
    if let Some(Err(e)) = raw.message.map(check_message) {
        problems.push(format!("{at}.message: {e}"));
    }
    if raw.on_activate.is_some_and(|c| c.trim().is_empty()) {
        problems.push(format!(
            "{at}.on_activate: empty; omit it when activation needs no command"
        ));
    }
    Spec {
        trigger,
        state,
        message: raw.message.map(str::to_string),
        session_expires_at: raw.session_expires_at,
        on_activate: raw.on_activate.map(str::to_string),
    }
}

/// What the edges and admins are told about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// `None` = unknown.
    pub state: Option<State>,
    pub session_expires_at: Option<u64>,
    pub message: Option<String>,
    pub activations: u64,
    pub activate_requests: u64,
}

impl Status {
    /// A host that does not parse or names no configured workload.
    pub(crate) fn unknown(host: &str) -> Self {
        Self {
            state: None,
            session_expires_at: None,
            message: Some(format!(
                "no workload named {}",
                crate::text::escape_untrusted(host, crate::hostname::MAX_NAME)
            )),
            activations: 0,
            activate_requests: 0,
        }
    }

    /// `{"state", "session_expires_at", "message"}`: what `GET /v1/edge/workloads/{host}` answers.
    pub(crate) fn edge_json(&self) -> Value {
        json!({
            "state": self.state.map_or("unknown", State::as_str),
            "session_expires_at": self.session_expires_at,
            "message": self.message,
        })
    }

    /// The edge JSON plus `activations` and `activate_requests`.
    pub(crate) fn admin_json(&self) -> Value {
        let mut v = self.edge_json();
        v["activations"] = json!(self.activations);
        v["activate_requests"] = json!(self.activate_requests);
        v
    }
}

/// The message for a known workload in `state`: the configured one while stopped, otherwise a
/// default that says what happens next; `None` while running.
pub(crate) fn message(
    id: &WorkloadId,
    trigger: Trigger,
    state: State,
    custom: Option<&str>,
    last_failure: Option<&str>,
) -> Option<String> {
    let what = id.describe();
    match state {
        State::Running => None,
        State::Stopped => Some(match (custom, trigger, id) {
            (Some(m), _, _) => m.to_string(),
            (None, Trigger::OnFailure, WorkloadId::TrainingJob { .. }) => {
                format!("{what}: the SSH session opens only if training fails (trigger on_failure)")
            }
            (None, Trigger::OnFailure, WorkloadId::Model { .. }) => format!(
                "{what}: the SSH session opens only if the deployment fails (trigger on_failure)"
            ),
            (None, _, _) => format!("{what} has stopped"),
        }),
        State::Activatable => Some(match last_failure {
            None => format!("{what} is asleep (on-demand session); connecting wakes it"),
            Some(f) => format!(
                "{what} is asleep (on-demand session); connecting wakes it (last activation failed: {f})"
            ),
        }),
        State::Starting => Some(format!("{what} is starting")),
    }
}
