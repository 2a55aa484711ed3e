//! The control plane's logic, without I/O: the per-workload state table (in memory, seeded from
//! the config), its transitions, the `/v1/edge` and `/v1/admin` routes, bearer checks and
//! request bodies. Processes are started elsewhere ([`super::activate`]); this file only
//! decides, under one lock, whether an activation starts, so concurrent requests start at most
//! one `on_activate` run per activation.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Deserializer};

use super::api::ApiError;
use super::workload::{Spec, WorkloadId};
use super::workload::{State, Status, Trigger, WorkloadKey, check_message, message, parse_host};
use crate::text::{escape_untrusted, quote_untrusted};

/// Why a control-plane request was refused; `Display` is the `error` text sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ControlError {
    #[error("control plane not enabled: set control_plane.{setting}")]
    NotEnabled { setting: &'static str },
    #[error("missing bearer token: expected header \"Authorization: Bearer <token>\"")]
    MissingBearer,
    #[error("invalid bearer token")]
    BadBearer,
    #[error(
        "unknown path {path}: expected GET /v1/edge/workloads/<host>, POST /v1/edge/workloads/<host>/activate, GET /v1/admin/workloads/<host>, POST /v1/admin/workloads/<host>/state or POST /v1/admin/workloads/<host>/expiry"
    )]
    UnknownPath { path: String },
    #[error("method {method} not allowed on {path}: expected {allowed}")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error("no workload named {host}")]
    UnknownWorkload { host: String },
    #[error("request body is not the expected JSON object ({expected}): {detail}")]
    BadJson {
        expected: &'static str,
        detail: String,
    },
    #[error("state {state} is not one of {}", State::NAMES)]
    BadState { state: String },
    #[error("message: {0}")]
    BadMessage(String),
    #[error(
        "expected exactly one of {{\"session_expires_at\": <unix seconds or null>}} and {{\"extend_secs\": <seconds>}}"
    )]
    BadExpiry,
    #[error(transparent)]
    Body(ApiError),
}

impl ControlError {
    pub(crate) fn status(&self) -> u16 {
        match self {
            Self::NotEnabled { .. } | Self::UnknownPath { .. } | Self::UnknownWorkload { .. } => {
                404
            }
            Self::MissingBearer | Self::BadBearer => 401,
            Self::MethodNotAllowed { .. } => 405,
            Self::Body(e) => e.status(),
            _ => 400,
        }
    }
}

/// Who may call a route: the edges or an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Edge,
    Admin,
}

/// The control-plane endpoints, each with the host from its path (not yet parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ControlRoute {
    EdgeStatus { host: String },
    EdgeActivate { host: String },
    AdminStatus { host: String },
    AdminState { host: String },
    AdminExpiry { host: String },
}

/// Which side a path belongs to; `None` = not a control-plane path (the Api-Key API's).
pub(crate) fn side(path: &str) -> Option<Side> {
    if path == "/v1/edge" || path.starts_with("/v1/edge/") {
        Some(Side::Edge)
    } else if path == "/v1/admin" || path.starts_with("/v1/admin/") {
        Some(Side::Admin)
    } else {
        None
    }
}

/// Maps method and path (without query) to a control-plane endpoint.
pub(crate) fn route(method: &str, path: &str) -> Result<ControlRoute, ControlError> {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let host = |h: &str| h.to_string();
    let (found, allowed) = match segments.as_slice() {
        ["v1", "edge", "workloads", h] if !h.is_empty() => {
            (ControlRoute::EdgeStatus { host: host(h) }, "GET")
        }
        ["v1", "edge", "workloads", h, "activate"] if !h.is_empty() => {
            (ControlRoute::EdgeActivate { host: host(h) }, "POST")
        }
        ["v1", "admin", "workloads", h] if !h.is_empty() => {
            (ControlRoute::AdminStatus { host: host(h) }, "GET")
        }
        ["v1", "admin", "workloads", h, "state"] if !h.is_empty() => {
            (ControlRoute::AdminState { host: host(h) }, "POST")
        }
        ["v1", "admin", "workloads", h, "expiry"] if !h.is_empty() => {
            (ControlRoute::AdminExpiry { host: host(h) }, "POST")
        }
        _ => {
            return Err(ControlError::UnknownPath {
                path: quote_untrusted(path, 200),
            });
        }
    };
    if method != allowed {
        return Err(ControlError::MethodNotAllowed {
            method: quote_untrusted(method, 20),
            path: quote_untrusted(path, 200),
            allowed,
        });
    }
    Ok(found)
}

/// The token in an `Authorization: Bearer <token>` header value.
pub(crate) fn bearer_from_header(value: Option<&[u8]>) -> Result<&str, ControlError> {
    crate::http_auth::credential(value, "Bearer").ok_or(ControlError::MissingBearer)
}

/// Checks a presented bearer token against the configured SHA-256, in constant time.
pub(crate) fn check_bearer(
    expected_sha256: &[u8; 32],
    presented: &str,
) -> Result<(), ControlError> {
    let digest = super::api::digest_api_key(presented);
    aws_lc_rs::constant_time::verify_slices_are_equal(expected_sha256, &digest)
        .map_err(|_| ControlError::BadBearer)
}

/// `Some(value)` even for `null`, so a field set to null is told apart from a missing one.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// `POST /v1/admin/workloads/{host}/state`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetState {
    pub state: String,
    /// Missing: keep the current message; `null`: back to the default; text: use it.
    #[serde(default, deserialize_with = "present")]
    pub message: Option<Option<String>>,
}

/// `POST /v1/admin/workloads/{host}/expiry`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetExpiry {
    #[serde(default, deserialize_with = "present")]
    pub session_expires_at: Option<Option<u64>>,
    #[serde(default)]
    pub extend_secs: Option<u64>,
}

/// Parses a JSON body of type `T`.
pub(crate) fn parse_body<T: for<'de> Deserialize<'de>>(
    body: &[u8],
    expected: &'static str,
) -> Result<T, ControlError> {
    serde_json::from_slice(body).map_err(|e| ControlError::BadJson {
        expected,
        detail: escape_untrusted(&e.to_string(), 200),
    })
}

/// The activate body: empty, or any JSON object (its fields are reserved and ignored).
pub(crate) fn check_activate_body(body: &[u8]) -> Result<(), ControlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    parse_body::<serde_json::Map<String, serde_json::Value>>(body, "{} or an empty body")
        .map(|_| ())
}

/// One workload's live state.
#[derive(Debug, Clone)]
struct Entry {
    trigger: Trigger,
    on_activate: Option<String>,
    state: State,
    message: Option<String>,
    session_expires_at: Option<u64>,
    /// `on_activate` runs started so far.
    activations: u64,
    /// `POST .../activate` calls received (an edge wakes a host with one, however many
    /// logins wait).
    activate_requests: u64,
    /// Why the last activation failed, until the next one starts or an admin sets the state.
    last_failure: Option<String>,
    /// Bumped by every activation and admin state change, so a finishing command whose
    /// activation was overtaken leaves the state alone.
    generation: u64,
}

/// An `on_activate` run to start: the caller spawns it and reports back with
/// [`ControlPlane::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Activation {
    pub key: WorkloadKey,
    /// The host name asked for (`SSH_EDGE_WORKLOAD_HOST`).
    pub host: String,
    pub command: String,
    generation: u64,
}

/// What an activate request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Activated {
    /// It was activatable: now starting (with a command to run) or running (without one).
    Started(Option<Activation>),
    /// Already starting or running: nothing new started.
    Underway,
    /// Stopped or unknown: it cannot be woken.
    Refused,
}

impl Activated {
    /// 202, 200 or 409.
    pub(crate) fn http_status(&self) -> u16 {
        match self {
            Self::Started(_) => 202,
            Self::Underway => 200,
            Self::Refused => 409,
        }
    }
}

/// The control plane's state: bearer digests and one [`Entry`] per configured workload.
pub(crate) struct ControlPlane {
    suffix: String,
    edge_token_sha256: Option<[u8; 32]>,
    admin_token_sha256: Option<[u8; 32]>,
    entries: Mutex<HashMap<WorkloadKey, Entry>>,
}

impl ControlPlane {
    pub(crate) fn new(
        suffix: &str,
        edge_token_sha256: Option<[u8; 32]>,
        admin_token_sha256: Option<[u8; 32]>,
        workloads: &[(WorkloadKey, Spec)],
    ) -> Self {
        let entries = workloads
            .iter()
            .map(|(key, spec)| {
                let entry = Entry {
                    trigger: spec.trigger,
                    on_activate: spec.on_activate.clone(),
                    state: spec.state,
                    message: spec.message.clone(),
                    session_expires_at: spec.session_expires_at,
                    activations: 0,
                    activate_requests: 0,
                    last_failure: None,
                    generation: 0,
                };
                (key.clone(), entry)
            })
            .collect();
        Self {
            suffix: suffix.to_string(),
            edge_token_sha256,
            admin_token_sha256,
            entries: Mutex::new(entries),
        }
    }

    /// The token digest for `side`, or why that side is switched off.
    pub(crate) fn token_sha256(&self, side: Side) -> Result<&[u8; 32], ControlError> {
        match side {
            Side::Edge => self
                .edge_token_sha256
                .as_ref()
                .ok_or(ControlError::NotEnabled {
                    setting: "edge_token_sha256",
                }),
            Side::Admin => self
                .admin_token_sha256
                .as_ref()
                .ok_or(ControlError::NotEnabled {
                    setting: "admin_token_sha256",
                }),
        }
    }

    /// No transition holds the lock across a panic-prone step, so a poisoned table is intact.
    fn lock(&self) -> MutexGuard<'_, HashMap<WorkloadKey, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The configured workload `host` names, if any.
    fn key(&self, host: &str) -> Option<WorkloadKey> {
        parse_host(host, &self.suffix)
    }

    /// The status of `host` (`unknown` if it names no configured workload).
    pub(crate) fn status(&self, host: &str) -> Status {
        let entries = self.lock();
        match self.key(host).and_then(|k| entries.get(&k).map(|e| (k, e))) {
            Some((key, entry)) => status_of(&key.id, entry),
            None => Status::unknown(host),
        }
    }

    /// `POST .../activate`: starts an activation if the workload is activatable, decided under
    /// the lock so that concurrent calls start one.
    pub(crate) fn activate(&self, host: &str) -> (Activated, Status) {
        let Some(key) = self.key(host) else {
            return (Activated::Refused, Status::unknown(host));
        };
        let normalized = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&key) else {
            return (Activated::Refused, Status::unknown(host));
        };
        entry.activate_requests += 1;
        let outcome = match entry.state {
            State::Activatable => Activated::Started(start(&key, normalized, entry)),
            State::Starting | State::Running => Activated::Underway,
            State::Stopped => Activated::Refused,
        };
        (outcome, status_of(&key.id, entry))
    }

    /// After a successful sign for `key`'s workload at `host`: wakes it if it is an on-demand
    /// workload that is asleep. `Some(None)` = now running (no command), `None` = nothing to do.
    pub(crate) fn activate_on_sign(
        &self,
        key: &WorkloadKey,
        host: &str,
    ) -> Option<Option<Activation>> {
        let mut entries = self.lock();
        let entry = entries.get_mut(key)?;
        (entry.trigger == Trigger::OnDemand && entry.state == State::Activatable)
            .then(|| start(key, host.to_string(), entry))
    }

    /// Records how an activation's command ended (`Err` = why it failed), unless an admin change
    /// or a newer activation overtook it.
    pub(crate) fn finish(&self, activation: &Activation, outcome: Result<(), String>) -> bool {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&activation.key) else {
            return false;
        };
        if entry.generation != activation.generation || entry.state != State::Starting {
            return false;
        }
        match outcome {
            Ok(()) => {
                entry.state = State::Running;
                entry.last_failure = None;
            }
            Err(why) => {
                entry.state = State::Activatable;
                entry.last_failure = Some(why);
            }
        }
        true
    }

    /// `POST /v1/admin/workloads/{host}/state`.
    pub(crate) fn set_state(&self, host: &str, req: SetState) -> Result<Status, ControlError> {
        let state = State::parse(&req.state).ok_or_else(|| ControlError::BadState {
            state: quote_untrusted(&req.state, 40),
        })?;
        if let Some(Some(m)) = &req.message {
            check_message(m).map_err(ControlError::BadMessage)?;
        }
        self.update(host, |entry| {
            entry.state = state;
            entry.last_failure = None;
            entry.generation += 1;
            if let Some(m) = req.message {
                entry.message = m;
            }
        })
    }

    /// `POST /v1/admin/workloads/{host}/expiry`; `now` in unix seconds.
    pub(crate) fn set_expiry(
        &self,
        host: &str,
        req: SetExpiry,
        now: u64,
    ) -> Result<Status, ControlError> {
        match (req.session_expires_at, req.extend_secs) {
            (Some(at), None) => self.update(host, |entry| entry.session_expires_at = at),
            (None, Some(secs)) => self.update(host, |entry| {
                let from = entry.session_expires_at.unwrap_or(now).max(now);
                entry.session_expires_at = Some(from.saturating_add(secs));
            }),
            _ => Err(ControlError::BadExpiry),
        }
    }

    fn update(&self, host: &str, change: impl FnOnce(&mut Entry)) -> Result<Status, ControlError> {
        let unknown = || ControlError::UnknownWorkload {
            host: escape_untrusted(host, crate::hostname::MAX_NAME),
        };
        let key = self.key(host).ok_or_else(unknown)?;
        let mut entries = self.lock();
        let entry = entries.get_mut(&key).ok_or_else(unknown)?;
        change(entry);
        Ok(status_of(&key.id, entry))
    }
}

/// Moves an activatable entry on: to starting with a command to run, or straight to running.
fn start(key: &WorkloadKey, host: String, entry: &mut Entry) -> Option<Activation> {
    entry.generation += 1;
    entry.last_failure = None;
    let Some(command) = entry.on_activate.clone() else {
        entry.state = State::Running;
        return None;
    };
    entry.state = State::Starting;
    entry.activations += 1;
    Some(Activation {
        key: key.clone(),
        host,
        command,
        generation: entry.generation,
    })
}

fn status_of(id: &WorkloadId, entry: &Entry) -> Status {
    Status {
        state: Some(entry.state),
        session_expires_at: entry.session_expires_at,
        message: message(
            id,
            entry.trigger,
            entry.state,
            entry.message.as_deref(),
            entry.last_failure.as_deref(),
        ),
        activations: entry.activations,
        activate_requests: entry.activate_requests,
    }
}
