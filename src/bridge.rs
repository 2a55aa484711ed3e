//! Channel ⇄ channel forwarding for the terminating fronts — the hot path.
//!
//! Data and extended data travel as the same `Bytes` russh decoded (`data_bytes`), so the
//! bridge neither copies nor allocates per packet. Every queue is russh's bounded per-channel
//! queue, and sends wait for the peer's SSH window, so a slow reader slows its writer.
//!
//! Channel *requests* (pty, env, shell, exec, subsystem) are forwarded by the russh server
//! handler itself, because russh keeps a single "wants reply" flag per channel: the reply to
//! the client has to be sent inside the request callback, before the next pipelined request is
//! read. [`BridgeControl::request`] sends the request to the backend and waits for the
//! backend's success/failure, which the downstream half of the bridge hands back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use russh::{Channel, ChannelMsg, ChannelWriteHalf, Pty, Sig, client, server};
use tokio::sync::oneshot;

use crate::upstream::REQUEST_REPLY_TIMEOUT;

/// After one direction ends, how long the other may take to finish its close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A channel request to pass on to the backend.
#[derive(Debug, Clone)]
pub enum BackendRequest {
    Pty {
        term: String,
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
        modes: Vec<(Pty, u32)>,
    },
    Env {
        name: String,
        value: String,
    },
    Shell,
    Exec(Vec<u8>),
    Subsystem(String),
    /// `auth-agent-req@openssh.com`: ask the backend's sshd to offer the user's agent.
    AgentForward,
}

impl BackendRequest {
    /// Short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            BackendRequest::Pty { .. } => "pty-req",
            BackendRequest::Env { .. } => "env",
            BackendRequest::Shell => "shell",
            BackendRequest::Exec(_) => "exec",
            BackendRequest::Subsystem(_) => "subsystem",
            BackendRequest::AgentForward => "auth-agent-req",
        }
    }
}

/// The handler's grip on one bridged channel: the backend side's writer and the queue of
/// requests waiting for the backend's answer (answers arrive in request order, RFC 4254 §5.4).
pub struct BridgeControl {
    backend: Arc<ChannelWriteHalf<client::Msg>>,
    pending: Mutex<VecDeque<oneshot::Sender<bool>>>,
}

impl BridgeControl {
    /// Sends `req` to the backend with want-reply set and returns whether it succeeded.
    pub async fn request(&self, req: BackendRequest) -> bool {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.push_back(tx);
        }
        let b = &self.backend;
        let sent = match req {
            BackendRequest::Pty {
                term,
                cols,
                rows,
                pix_width,
                pix_height,
                modes,
            } => {
                b.request_pty(true, &term, cols, rows, pix_width, pix_height, &modes)
                    .await
            }
            BackendRequest::Env { name, value } => b.set_env(true, name, value).await,
            BackendRequest::Shell => b.request_shell(true).await,
            BackendRequest::Exec(cmd) => b.exec(true, cmd).await,
            BackendRequest::Subsystem(name) => b.request_subsystem(true, name).await,
            BackendRequest::AgentForward => b.agent_forward(true).await,
        };
        if sent.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(REQUEST_REPLY_TIMEOUT, rx).await,
            Ok(Ok(true))
        )
    }

    pub async fn window_change(&self, cols: u32, rows: u32, pix_width: u32, pix_height: u32) {
        let _ = self
            .backend
            .window_change(cols, rows, pix_width, pix_height)
            .await;
    }

    pub async fn signal(&self, sig: Sig) {
        let _ = self.backend.signal(sig).await;
    }

    fn answer(&self, ok: bool) {
        let waiter = self.pending.lock().ok().and_then(|mut p| p.pop_front());
        if let Some(waiter) = waiter {
            let _ = waiter.send(ok);
        }
    }
}

/// Counters the bridge updates, resolved once per edge.
#[derive(Clone)]
pub struct BridgeMetrics {
    pub up_bytes: IntCounter,
    pub down_bytes: IntCounter,
    pub channels_active: IntGauge,
}

/// Starts forwarding between a client's channel and the matching backend channel.
pub fn start(
    client_channel: Channel<server::Msg>,
    backend_channel: Channel<client::Msg>,
    client_handle: server::Handle,
    metrics: BridgeMetrics,
) -> Arc<BridgeControl> {
    let client_id = client_channel.id();
    let (mut client_rx, client_tx) = client_channel.split();
    let (mut backend_rx, backend_tx) = backend_channel.split();
    let control = Arc::new(BridgeControl {
        backend: Arc::new(backend_tx),
        pending: Mutex::new(VecDeque::new()),
    });

    let up_control = control.clone();
    let up_bytes = metrics.up_bytes.clone();
    let up = async move {
        let backend = &up_control.backend;
        loop {
            let Some(msg) = client_rx.wait().await else {
                break;
            };
            let result = match msg {
                ChannelMsg::Data { data } => {
                    up_bytes.inc_by(data.len() as u64);
                    backend.data_bytes(data).await
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    up_bytes.inc_by(data.len() as u64);
                    backend.extended_data_bytes(ext, data).await
                }
                ChannelMsg::Eof => backend.eof().await,
                ChannelMsg::Close => break,
                // Requests are forwarded by the handler (see module docs); the rest is
                // informational.
                _ => Ok(()),
            };
            if result.is_err() {
                break;
            }
        }
        let _ = backend.close().await;
    };

    let down_control = control.clone();
    let down_bytes = metrics.down_bytes.clone();
    let down = async move {
        loop {
            let Some(msg) = backend_rx.wait().await else {
                break;
            };
            let result = match msg {
                ChannelMsg::Data { data } => {
                    down_bytes.inc_by(data.len() as u64);
                    client_tx.data_bytes(data).await
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    down_bytes.inc_by(data.len() as u64);
                    client_tx.extended_data_bytes(ext, data).await
                }
                ChannelMsg::Eof => client_tx.eof().await,
                ChannelMsg::ExitStatus { exit_status } => client_tx.exit_status(exit_status).await,
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    error_message,
                    lang_tag,
                } => {
                    let _ = client_handle
                        .exit_signal_request(
                            client_id,
                            signal_name,
                            core_dumped,
                            error_message,
                            lang_tag,
                        )
                        .await;
                    Ok(())
                }
                ChannelMsg::Success => {
                    down_control.answer(true);
                    Ok(())
                }
                ChannelMsg::Failure => {
                    down_control.answer(false);
                    Ok(())
                }
                ChannelMsg::Close => break,
                _ => Ok(()),
            };
            if result.is_err() {
                break;
            }
        }
        // Wake any request still waiting: the backend will not answer it now.
        while down_control
            .pending
            .lock()
            .map(|p| !p.is_empty())
            .unwrap_or(false)
        {
            down_control.answer(false);
        }
        let _ = client_tx.close().await;
    };

    let gauge = metrics.channels_active.clone();
    gauge.inc();
    tokio::spawn(async move {
        let mut up = std::pin::pin!(up);
        let mut down = std::pin::pin!(down);
        tokio::select! {
            _ = &mut up => { let _ = tokio::time::timeout(CLOSE_GRACE, down).await; }
            _ = &mut down => { let _ = tokio::time::timeout(CLOSE_GRACE, up).await; }
        }
        gauge.dec();
    });
    control
}
