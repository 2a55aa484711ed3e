//! Waking workloads: one task per host however many logins wait for it, which asks the
//! control plane to activate it (once) and probes the backend with backoff until it accepts a
//! connection, the control plane gives up on it, or the activation timeout passes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{info, warn};

use super::ControlPlane;
use super::status::{Verdict, shown, verdict};
use crate::hostname::Target;
use crate::upstream::Connector;

/// Where one wake-up stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Wake {
    Pending,
    Ready,
    Failed {
        reason: &'static str,
        message: String,
    },
}

/// The wake-ups in progress, by host.
#[derive(Default)]
pub(super) struct Wakes(Mutex<HashMap<String, watch::Receiver<Wake>>>);

/// First and longest pause between backend probes.
const FIRST_PROBE_PAUSE: Duration = Duration::from_millis(100);
const MAX_PROBE_PAUSE: Duration = Duration::from_millis(500);
/// How often the control plane is asked again while waiting (a failed activation, a stop).
const STATUS_EVERY: Duration = Duration::from_secs(3);

impl Wakes {
    /// Joins the wake-up of `target`'s host, starting it if none is in progress.
    pub(super) fn join(
        &self,
        control_plane: &Arc<ControlPlane>,
        target: &Target,
        activate: bool,
        backend: &str,
        connector: &Arc<Connector>,
    ) -> watch::Receiver<Wake> {
        let mut wakes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let host = target.host.as_str();
        if let Some(rx) = wakes.get(host)
            && matches!(*rx.borrow(), Wake::Pending)
        {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(Wake::Pending);
        wakes.insert(host.to_string(), rx.clone());
        let (cp, target, backend, connector) = (
            control_plane.clone(),
            target.clone(),
            backend.to_string(),
            connector.clone(),
        );
        tokio::spawn(async move {
            let started = Instant::now();
            let outcome = run(&cp, &target, activate, &backend, &connector).await;
            let host = target.host;
            let label = match &outcome {
                Wake::Ready => {
                    cp.metrics
                        .activation_seconds
                        .observe(started.elapsed().as_secs_f64());
                    info!(target = %host, backend = %backend, seconds = started.elapsed().as_secs_f64(), "workload woke up");
                    "ready"
                }
                Wake::Failed { reason, message } => {
                    warn!(target = %host, reason, detail = %message, "workload did not wake up");
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
    target: &Target,
    activate: bool,
    backend: &str,
    connector: &Connector,
) -> Wake {
    let host = target.host.as_str();
    let deadline = Instant::now() + cp.settings.activation_timeout;
    if activate {
        match cp.ask(cp.client.activate(host)).await {
            Ok(status) => {
                if let Some(failed) = gave_up(target, &status) {
                    return failed;
                }
            }
            // The activation may have started anyway: keep probing until the timeout.
            Err(e) => {
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
                && let Some(failed) = gave_up(target, &status)
            {
                return failed;
            }
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(now))).await;
        pause = (pause * 3 / 2).min(MAX_PROBE_PAUSE);
    }
}

/// A status that ends the wait: the verdict's refusals (stopped, unknown), or activatable
/// again (the activation failed on the control plane's side).
fn gave_up(target: &Target, status: &super::WorkloadStatus) -> Option<Wake> {
    match verdict(target, status) {
        Verdict::Proceed | Verdict::Wake { activate: false } => None,
        Verdict::Wake { activate: true } => Some(Wake::Failed {
            reason: "activation_failed",
            message: shown(status.message.as_deref())
                .unwrap_or_else(|| "the workload could not be woken".into()),
        }),
        Verdict::Refuse { reason, message } => Some(Wake::Failed { reason, message }),
    }
}
