//! The forwarding half of the session handler: `ssh -L/-D` (direct-tcpip), `ssh -R`
//! (tcpip-forward; the backend's connections come back through [`crate::upstream::ClientLink`]) and `ssh -A`,
//! each allowed only where the route and the user's certificate both permit it, and the shared
//! "backend channel opened → bridge it" step.

use russh::server::{ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelOpenFailure};
use tracing::info;

use super::EdgeSession;
use crate::bridge::REQUEST_REPLY_TIMEOUT;
use crate::bridge::{self, BackendRequest};

/// What the backend answered to a channel open, bounded by the request timeout.
pub(super) type Opened =
    Result<Result<Channel<russh::client::Msg>, russh::Error>, tokio::time::error::Elapsed>;

impl EdgeSession {
    /// Finishes a channel open: on a backend channel, accept the client's and bridge the two;
    /// otherwise refuse it with a reason naming `what` (OpenSSH shows it to the user).
    pub(super) async fn bridge_opened(
        &mut self,
        opened: Opened,
        what: &str,
        outcome: &str,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) {
        let metrics = &self.admit.metrics;
        let (reason, message) = match opened {
            Ok(Ok(backend)) => {
                reply.accept().await;
                let id = channel.id();
                let control =
                    bridge::start(channel, backend, session.handle(), self.bridge.clone());
                self.channels.insert(id, control);
                metrics.channels.with_label_values(&[outcome]).inc();
                return;
            }
            Ok(Err(e)) => (
                "backend_refused",
                format!("the backend refused {what}: {e}"),
            ),
            Err(_) => (
                "backend_timeout",
                format!("the backend did not open {what} in time"),
            ),
        };
        metrics.channels.with_label_values(&[reason]).inc();
        info!(client = %self.client.addr, reason = %message, "channel refused");
        reply
            .reject(ChannelOpenFailure::Other {
                code: 2,
                reason: message,
            })
            .await;
    }

    /// Counts and logs a forwarding refusal (`outcome` is the metric label).
    fn deny(&self, outcome: &str, what: &str, extension: &str) {
        self.admit
            .metrics
            .channels
            .with_label_values(&[outcome])
            .inc();
        info!(client = %self.client.addr, key_id = self.login.as_ref().map(|l| l.identity.key_id.as_str()).unwrap_or(""),
            "{what} refused by the route, its remote or the certificate ({extension})");
    }

    /// `ssh -L` and `ssh -D`: the backend opens the TCP connection, inside the workload.
    pub(super) async fn open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        (host, port): (&str, u32),
        (originator_address, originator_port): (&str, u32),
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) {
        let Some(login) = &self.login else {
            return reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        };
        if !login.forwarding.local {
            self.deny(
                "denied_port_forwarding",
                "port forwarding",
                "permit-port-forwarding",
            );
            return reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
        }
        let open = login.upstream.handle().channel_open_direct_tcpip(
            host,
            port,
            originator_address,
            originator_port,
        );
        let opened = tokio::time::timeout(REQUEST_REPLY_TIMEOUT, open).await;
        let what = format!("forwarding to {host}:{port} from {}", login.target.host);
        let id = channel.id();
        self.bridge_opened(
            opened,
            &what,
            "opened_direct_tcpip",
            channel,
            reply,
            session,
        )
        .await;
        if self.channels.contains_key(&id) {
            self.channel_opened(id, "direct-tcpip");
            self.audit_channel("direct-tcpip", Some(format!("{host}:{port}")));
        }
    }

    /// `ssh -R`: ask the backend to listen; returns whether it does (and sets a 0 port to the
    /// one it bound).
    pub(super) async fn remote_forward(&self, address: &str, port: &mut u32) -> bool {
        let Some(login) = &self.login else {
            return false;
        };
        if !login.forwarding.remote {
            self.deny(
                "denied_remote_forwarding",
                "remote forwarding",
                "permit-port-forwarding",
            );
            return false;
        }
        let asked = login.upstream.handle().tcpip_forward(address, *port);
        match tokio::time::timeout(REQUEST_REPLY_TIMEOUT, asked).await {
            Ok(Ok(bound)) => {
                if *port == 0 {
                    *port = bound;
                }
                login.upstream.note_remote_forward(address, *port);
                info!(client = %self.client.addr, target = %login.target.host, address, port = *port, "remote forwarding opened");
                true
            }
            _ => false,
        }
    }

    pub(super) async fn cancel_remote_forward(&self, address: &str, port: u32) -> bool {
        let Some(login) = &self.login else {
            return false;
        };
        login.upstream.forget_remote_forward(address, port);
        let cancel = login.upstream.handle().cancel_tcpip_forward(address, port);
        matches!(
            tokio::time::timeout(REQUEST_REPLY_TIMEOUT, cancel).await,
            Ok(Ok(()))
        )
    }

    /// `ssh -A`: the backend's sshd then opens agent channels, relayed through `ClientLink`.
    pub(super) async fn agent_forward(&self, channel: ChannelId) -> bool {
        if !self.login.as_ref().is_some_and(|l| l.forwarding.agent) {
            self.deny(
                "denied_agent_forwarding",
                "agent forwarding",
                "permit-agent-forwarding",
            );
            return false;
        }
        if let Some(login) = &self.login {
            login.upstream.note_agent();
        }
        self.forward(channel, BackendRequest::AgentForward).await
    }
}
