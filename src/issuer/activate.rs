//! Runs `on_activate` commands: the one place the issuer starts processes. Each run is
//! `sh -c <command>` with the workload in its environment, stdin closed and stdout/stderr
//! inherited (the issuer's own log stream); its exit decides the workload's next state.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use tokio::process::Command;

use super::control::{Activation, ControlPlane};

/// Starts `activation`'s command in the background and reports its end to `control`.
pub(crate) fn spawn(control: Arc<ControlPlane>, activation: Activation) {
    tokio::spawn(async move {
        let host = activation.host.as_str();
        tracing::info!(
            host,
            tenant = activation.key.tenant,
            "issuer: on_activate started"
        );
        let outcome = run(&activation).await;
        match &outcome {
            Ok(()) => tracing::info!(host, "issuer: on_activate succeeded, workload running"),
            Err(why) => {
                tracing::warn!(host, error = %why, "issuer: on_activate failed, workload activatable again")
            }
        }
        if !control.finish(&activation, outcome) {
            tracing::info!(
                host,
                "issuer: on_activate ended after the workload's state was changed; state left as is"
            );
        }
    });
}

async fn run(activation: &Activation) -> Result<(), String> {
    let status = Command::new("sh")
        .arg("-c")
        .arg(&activation.command)
        .env("SSH_EDGE_WORKLOAD_HOST", &activation.host)
        .env("SSH_EDGE_TENANT", &activation.key.tenant)
        .env("SSH_EDGE_WORKLOAD", activation.key.id.env_name())
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        // The issuer stopping stops its hooks (no wake-up half done after it is gone).
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(describe(status))
    }
}

/// `exit status 3` or `killed by signal 9`: short enough for the message users see.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended abnormally".into(),
    }
}
