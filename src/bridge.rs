//! Channel ⇄ channel forwarding for the terminating fronts — the hot path.
//!
//! Data and extended data travel as the same `Bytes` russh decoded (`data_bytes`), so the
//! bridge neither copies nor allocates per packet.
//!
//! Flow control is per channel, through SSH windows, end to end. Both russh sessions run with
//! `manual_window_adjust` (our russh patch, `vendor/russh/PATCHES.md`): a channel's receive
//! window is re-opened only after the bridge has handed those bytes to the other side, and
//! that hand-off waits for the other side's window. So when one reader stops, its sender runs
//! out of window and stops too, the bytes held in between stay under one window, and the
//! connection's other channels keep flowing. (Stock russh re-opens windows on arrival, so a
//! stopped reader fills the channel queue and blocks the whole connection's loop.)
//!
//! Channel *requests* (pty, env, shell, exec, subsystem) are forwarded by the russh server
//! handler itself, because russh keeps a single "wants reply" flag per channel: the reply to
//! the client has to be sent inside the request callback, before the next pipelined request is
//! read. [`BridgeControl::request`] sends the request to the backend and waits for the
//! backend's success/failure, which the downstream half of the bridge hands back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::IntGauge;
use russh::{Channel, ChannelMsg, ChannelWriteHalf, Pty, Sig, client, server};
use tokio::sync::oneshot;

/// How long a channel open or request may wait for the other side's answer (the backend's,
/// or the client's for channels the backend opens).
pub(crate) const REQUEST_REPLY_TIMEOUT: Duration = Duration::from_secs(15);

/// After one direction ends, how long the other may take to finish its close handshake.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A channel request to pass on to the backend.
#[derive(Debug, Clone)]
pub(crate) enum BackendRequest {
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
    pub(crate) fn name(&self) -> &'static str {
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
pub(crate) struct BridgeControl {
    backend: Arc<ChannelWriteHalf<client::Msg>>,
    pending: Mutex<VecDeque<oneshot::Sender<bool>>>,
}

impl BridgeControl {
    /// Sends `req` to the backend with want-reply set and returns whether it succeeded.
    pub(crate) async fn request(&self, req: BackendRequest) -> bool {
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

    pub(crate) async fn window_change(
        &self,
        cols: u32,
        rows: u32,
        pix_width: u32,
        pix_height: u32,
    ) {
        let _ = self
            .backend
            .window_change(cols, rows, pix_width, pix_height)
            .await;
    }

    pub(crate) async fn signal(&self, sig: Sig) {
        let _ = self.backend.signal(sig).await;
    }

    fn answer(&self, ok: bool) {
        let waiter = self.pending.lock().ok().and_then(|mut p| p.pop_front());
        if let Some(waiter) = waiter {
            let _ = waiter.send(ok);
        }
    }
}

/// What every bridge of an edge shares: counters, resolved once, and the channel window.
#[derive(Clone)]
pub struct BridgeSettings {
    pub up_bytes: crate::bytes_count::ByteCounter,
    pub down_bytes: crate::bytes_count::ByteCounter,
    pub channels_active: IntGauge,
    /// The receive window both sessions advertise per channel (`ssh.window_size`).
    pub window_size: u32,
}

/// How many messages russh may queue per channel. Under `manual_window_adjust` the bytes
/// queued are bounded by the window; this bounds the count too (for a peer that sends tiny
/// packets) at one message per KiB of window, so a well-behaved peer never fills it.
pub(crate) fn channel_queue_depth(window_size: u32) -> usize {
    (window_size as usize / 1024).max(100)
}

/// Consumed bytes owed back to a sender's window, returned in quarter-window steps (OpenSSH
/// batches the same way), so a sender whose reader keeps up never waits for a grant.
struct WindowCredit {
    owed: u32,
    step: u32,
}

impl WindowCredit {
    fn new(window_size: u32) -> Self {
        Self {
            owed: 0,
            step: (window_size / 4).max(1),
        }
    }

    /// Records `n` consumed bytes; returns a grant when a step's worth is owed.
    fn consumed(&mut self, n: usize) -> Option<u32> {
        self.owed = self.owed.saturating_add(n as u32);
        (self.owed >= self.step).then(|| std::mem::take(&mut self.owed))
    }
}

/// Starts forwarding between a client's channel and the matching backend channel.
pub(crate) fn start(
    client_channel: Channel<server::Msg>,
    backend_channel: Channel<client::Msg>,
    client_handle: server::Handle,
    settings: BridgeSettings,
) -> Arc<BridgeControl> {
    let client_id = client_channel.id();
    let (mut client_rx, client_tx) = client_channel.split();
    let client_tx = Arc::new(client_tx);
    let (mut backend_rx, backend_tx) = backend_channel.split();
    let control = Arc::new(BridgeControl {
        backend: Arc::new(backend_tx),
        pending: Mutex::new(VecDeque::new()),
    });

    let up_control = control.clone();
    let up_bytes = settings.up_bytes.clone();
    let up_client_tx = client_tx.clone();
    let mut up_credit = WindowCredit::new(settings.window_size);
    let up = async move {
        let backend = &up_control.backend;
        loop {
            let Some(msg) = client_rx.wait().await else {
                break;
            };
            let result = match msg {
                ChannelMsg::Data { data } => {
                    let n = data.len();
                    up_bytes.inc_by(n as u64);
                    let sent = backend.data_bytes(data).await;
                    grant(&up_client_tx, &mut up_credit, n, sent).await
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    let n = data.len();
                    up_bytes.inc_by(n as u64);
                    let sent = backend.extended_data_bytes(ext, data).await;
                    grant(&up_client_tx, &mut up_credit, n, sent).await
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
    let down_bytes = settings.down_bytes.clone();
    let mut down_credit = WindowCredit::new(settings.window_size);
    let down = async move {
        let backend = &down_control.backend;
        loop {
            let Some(msg) = backend_rx.wait().await else {
                break;
            };
            let result = match msg {
                ChannelMsg::Data { data } => {
                    let n = data.len();
                    down_bytes.inc_by(n as u64);
                    let sent = client_tx.data_bytes(data).await;
                    grant(backend, &mut down_credit, n, sent).await
                }
                ChannelMsg::ExtendedData { data, ext } => {
                    let n = data.len();
                    down_bytes.inc_by(n as u64);
                    let sent = client_tx.extended_data_bytes(ext, data).await;
                    grant(backend, &mut down_credit, n, sent).await
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

    let gauge = settings.channels_active.clone();
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

/// After `n` bytes from `source`'s peer were handed on (`sent`), returns them to that peer's
/// window once a step's worth is owed.
async fn grant<S>(
    source: &ChannelWriteHalf<S>,
    credit: &mut WindowCredit,
    n: usize,
    sent: Result<(), russh::Error>,
) -> Result<(), russh::Error>
where
    S: From<(russh::ChannelId, ChannelMsg)> + Send + Sync + 'static,
{
    sent?;
    match credit.consumed(n) {
        Some(amount) => source.adjust_window(amount).await,
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_returned_in_quarter_window_steps() {
        let mut credit = WindowCredit::new(1000);
        assert_eq!(credit.consumed(100), None);
        assert_eq!(credit.consumed(149), None);
        assert_eq!(credit.consumed(1), Some(250));
        assert_eq!(credit.consumed(600), Some(600));
        assert_eq!(credit.consumed(0), None);
    }

    #[test]
    fn queue_depth_scales_with_the_window() {
        assert_eq!(channel_queue_depth(8 << 20), 8192);
        assert_eq!(channel_queue_depth(64 << 10), 100);
    }
}
