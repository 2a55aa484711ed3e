//! Waking workloads: one task per host however many logins wait for it, which asks the
//! control plane to activate it (once) and probes the backend with backoff until it accepts a
//! connection, the control plane gives up on it, or the activation timeout passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use super::ControlPlane;
use super::status::WorkloadState;
use crate::upstream::Connector;

/// Where one wake-up stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    Pending,
    Ready,
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// The wake-ups in progress, by host.
#[derive(Default)]
pub struct Wakes(Mutex<HashMap<String, watch::Receiver<Wake>>>);

/// First and longest pause between backend probes.
const FIRST_PROBE_PAUSE: Duration = Duration::from_millis(100);
const MAX_PROBE_PAUSE: Duration = Duration::from_millis(500);
/// How often the control plane is asked again while waiting (a failed activation, a stop).
const STATUS_EVERY: Duration = Duration::from_secs(3);

impl Wakes {
    /// Joins the wake-up of `host`, starting it if none is in progress.
    pub fn join(
        &self,
        control_plane: &Arc<ControlPlane>,
        host: &str,
        activate: bool,
        backend: &str,
        connector: &Arc<Connector>,
    ) -> watch::Receiver<Wake> {
        let mut wakes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rx) = wakes.get(host)
            && matches!(*rx.borrow(), Wake::Pending)
        {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Wake::Pending);
        wakes.insert(host.to_string(), rx.clone());
        let (cp, host, backend, connector) = (
            control_plane.clone(),
            host.to_string(),
            backend.to_string(),
            connector.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = run(&cp, &host, activate, &backend, &connector).await;
            let label = match &outcome {
                Wake::Ready => {
                    cp.metrics
                        .activation_seconds
                        .observe(started.elapsed().as_secs_f64());
                    info!(target = %host, backend = %backend, seconds = started.elapsed().as_secs_f64(), "workload woke up");
                    "ready"
                }
                Wake::Failed { reason, message } => {
                    warn!(target = %host, reason, %message, "workload did not wake up");
                    if *reason == "activation_timeout" {
                        "timeout"
                    } else {
                        "failed"
                    }
                }
                Wake::Pending => "failed",
            };
            cp.metrics.activations.with_label_values(&[label]).inc();
            // The next login asks afresh.
            cp.cache.remove(&host);
            cp.wakes
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&host);
            let _ = tx.send(outcome);
        });
        rx
    }
}

async fn run(
    cp: &ControlPlane,
    host: &str,
    activate: bool,
    backend: &str,
    connector: &Connector,
) -> Wake {
    let deadline = Instant::now() + cp.settings.activation_timeout;
    if activate {
        let started = Instant::now();
        let answer = cp.client.activate(host).await;
        cp.metrics
            .control_plane_seconds
            .observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(status) => {
                cp.count("ok");
                if let Some(failed) = gave_up(&status) {
                    return failed;
                }
            }
            // The activation may have started anyway: keep probing until the timeout.
            Err(e) => {
                cp.count(e.outcome());
                warn!(target = %host, error = %e, "activation request failed; waiting for the backend anyway");
            }
        }
    }
    let mut pause = FIRST_PROBE_PAUSE;
    let mut next_status = Instant::now() + STATUS_EVERY;
    loop {
        if connector.probe(backend).await {
            return Wake::Ready;
        }
        let now = Instant::now();
        if now >= deadline {
            return Wake::Failed {
                reason: "activation_timeout",
                message: format!(
                    "the workload did not come up within {} s; try again later",
                    cp.settings.activation_timeout.as_secs()
                ),
            };
        }
        if now >= next_status {
            next_status = now + STATUS_EVERY;
            if let Ok(status) = cp.status(host, true).await
                && let Some(failed) = gave_up(&status)
            {
                return failed;
            }
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
        pause = (pause * 3 / 2).min(MAX_PROBE_PAUSE);
    }
}

/// A status that ends the wait: stopped or unknown, or activatable again (the activation
/// failed on the control plane's side).
fn gave_up(status: &super::WorkloadStatus) -> Option<Wake> {
    let message = super::status::shown(status.message.as_deref());
    match status.state {
        WorkloadState::Running | WorkloadState::Starting => None,
        WorkloadState::Activatable => Some(Wake::Failed {
            reason: "activation_failed",
            message: message.unwrap_or_else(|| "the workload could not be woken".into()),
        }),
        WorkloadState::Stopped => Some(Wake::Failed {
            reason: "workload_stopped",
            message: message.unwrap_or_else(|| "the workload stopped".into()),
        }),
        WorkloadState::Unknown => Some(Wake::Failed {
            reason: "workload_unknown",
            message: message.unwrap_or_else(|| "no such workload".into()),
        }),
    }
}
