//! The control plane: whether a workload is running, waking it when it sleeps, and its session
//! expiry.
//!
//! After a login is authenticated and before the backend is dialled, the edge asks
//! `GET {url}/v1/edge/workloads/{host}` (cached per host for `cache_ttl_secs`). A running
//! workload goes on; a stopped or unknown one is refused with the control plane's message; an
//! activatable one is woken: one `POST …/activate` per host however many logins wait (all
//! fronts share one [`ControlPlane`]), then the backend is probed with backoff until it accepts
//! a connection or `activation_timeout_secs` pass. Waiting logins see progress lines.
//!
//! Layout: [`status`] is the pure answer and verdict, [`http`] the client, [`wake`] the
//! activations.

pub(crate) mod http;
pub(crate) mod status;
mod wake;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tracing::warn;

pub(crate) use http::{ControlPlaneClient, ControlPlaneError};
pub(crate) use status::{Verdict, WorkloadStatus};
use wake::{Wake, Wakes};

use crate::hostname::Target;
use crate::metrics::Metrics;
use crate::upstream::Connector;

/// What a login does when the control plane does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnavailable {
    /// Connect as if the workload were running (authentication already happened).
    Allow,
    /// Refuse with a message that says the control plane is unavailable.
    Deny,
}

/// The validated `[control_plane]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlPlaneSettings {
    pub url: String,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub cache_ttl: Duration,
    pub timeout: Duration,
    pub on_unavailable: OnUnavailable,
    pub activation_timeout: Duration,
    pub expiry_refresh: Duration,
    pub token_hold: Duration,
}

/// Why a login was refused by the workload gate: the metric reason and the user's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GateRefusal {
    pub reason: &'static str,
    pub message: String,
}

/// The gate's answer for an admitted login.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct GateOpen {
    /// The workload's session expiry (Unix seconds), when it has one.
    pub expires_at: Option<u64>,
}

/// One control plane and what the edge remembers of it.
pub struct ControlPlane {
    settings: ControlPlaneSettings,
    client: ControlPlaneClient,
    cache: DashMap<String, (Instant, WorkloadStatus)>,
    wakes: Wakes,
    metrics: Arc<Metrics>,
}

impl ControlPlane {
    pub(crate) fn new(
        settings: ControlPlaneSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let roots = crate::connect::roots(settings.ca_file.as_ref())
            .map_err(|e| rustls::Error::General(format!("control_plane.ca_file: {e}")))?;
        let client = ControlPlaneClient::new(
            &settings.url,
            settings.token.clone(),
            roots,
            settings.timeout,
        )?;
        Ok(Arc::new(Self {
            settings,
            client,
            cache: DashMap::new(),
            wakes: Wakes::default(),
            metrics,
        }))
    }

    pub(crate) fn settings(&self) -> &ControlPlaneSettings {
        &self.settings
    }

    /// The workload's status: from the cache when fresh and `fresh` is false, else asked.
    pub(crate) async fn status(
        &self,
        host: &str,
        fresh: bool,
    ) -> Result<WorkloadStatus, ControlPlaneError> {
        if !fresh
            && let Some(entry) = self.cache.get(host)
            && entry.0.elapsed() < self.settings.cache_ttl
        {
            self.count("cached");
            return Ok(entry.1.clone());
        }
        let answer = self.ask(self.client.status(host)).await;
        if let Ok(status) = &answer {
            // Bounded: a stale entry is replaced; a flood of distinct hosts is capped by
            // dropping the cache (it is only an optimisation).
            if self.cache.len() >= 100_000 {
                self.cache.clear();
            }
            self.cache
                .insert(host.to_string(), (Instant::now(), status.clone()));
        }
        answer
    }

    /// One request to the control plane, timed and counted by outcome.
    async fn ask(
        &self,
        request: impl std::future::Future<Output = Result<WorkloadStatus, ControlPlaneError>>,
    ) -> Result<WorkloadStatus, ControlPlaneError> {
        let started = Instant::now();
        let answer = request.await;
        self.metrics
            .control_plane_seconds
            .observe(started.elapsed().as_secs_f64());
        self.count(
            answer
                .as_ref()
                .map_or_else(ControlPlaneError::outcome, |_| "ok"),
        );
        answer
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .control_plane_requests
            .with_label_values(&[outcome])
            .inc();
    }

    /// The session expiry now (for an open session's re-read): `None` when the control plane
    /// did not answer (the session keeps the expiry it has).
    pub(crate) async fn current_expiry(&self, host: &str, fresh: bool) -> Option<Option<u64>> {
        self.status(host, fresh)
            .await
            .ok()
            .map(|s| s.session_expires_at)
    }

    /// The gate for one authenticated login to `target`, whose backend is `backend`: `Ok`
    /// to connect, `Err` with the user's message. `progress` receives lines to show while
    /// the workload wakes.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        target: &Target,
        backend: &str,
        connector: &Arc<Connector>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<GateOpen, GateRefusal> {
        let host = target.host.as_str();
        let status = match self.status(host, false).await {
            Ok(s) => s,
            Err(e) => return self.unavailable(host, &e),
        };
        let activate = match status::verdict(target, &status) {
            Verdict::Proceed => {
                return Ok(GateOpen {
                    expires_at: status.session_expires_at,
                });
            }
            Verdict::Refuse { reason, message } => {
                return Err(GateRefusal {
                    reason,
                    message: format!("{host}: {message}"),
                });
            }
            Verdict::Wake { activate } => activate,
        };
        let mut wake = self.wakes.join(self, target, activate, backend, connector);
        let started = Instant::now();
        progress(status::waking_line(target, 0));
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        loop {
            let now = wake.borrow_and_update().clone();
            match now {
                Wake::Pending => {}
                Wake::Ready => break,
                Wake::Failed { reason, message } => {
                    return Err(GateRefusal {
                        reason,
                        message: format!("{host}: {message}"),
                    });
                }
            }
            tokio::select! {
                changed = wake.changed() => {
                    if changed.is_err() && matches!(*wake.borrow(), Wake::Pending) {
                        return Err(GateRefusal {
                            reason: "activation_failed",
                            message: format!("{host}: the wake-up was abandoned; try again"),
                        });
                    }
                }
                _ = tick.tick() => progress(status::waking_line(target, started.elapsed().as_secs())),
            }
        }
        progress(status::woke_line(target, started.elapsed().as_secs()));
        // The expiry of the session that just started (the wake-up may have set it).
        let expires_at = self
            .status(host, true)
            .await
            .ok()
            .and_then(|s| s.session_expires_at);
        Ok(GateOpen { expires_at })
    }

    fn unavailable(&self, host: &str, e: &ControlPlaneError) -> Result<GateOpen, GateRefusal> {
        let decision = match self.settings.on_unavailable {
            OnUnavailable::Allow => "allow",
            OnUnavailable::Deny => "deny",
        };
        self.metrics
            .control_plane_unavailable
            .with_label_values(&[decision])
            .inc();
        warn!(target = host, error = %e, decision, "control plane unavailable");
        match self.settings.on_unavailable {
            OnUnavailable::Allow => Ok(GateOpen::default()),
            OnUnavailable::Deny => Err(GateRefusal {
                reason: "control_plane_unavailable",
                message: format!(
                    "{host}: the control plane that knows this workload's state is unavailable; try again shortly"
                ),
            }),
        }
    }
}

/// How often a waiting login is told how long it has waited.
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(2);
