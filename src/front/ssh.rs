//! The russh server handler for the terminating fronts (A: TLS+SNI, C: plain SSH).
//!
//! Kept thin: it decides the target, applies the certificate policy, logs in to the backend and
//! hands each channel to [`crate::bridge`]. Problems the user must hear about (a malformed host
//! name, an unreachable backend) are delivered as an SSH disconnect message right after the
//! authentication step, because SSH has no earlier place to put text a client will show.

#[path = "ssh_forwarding.rs"]
mod forwarding;
#[path = "ssh_open.rs"]
mod open;

use std::collections::HashMap;
use std::sync::Arc;

use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Config, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty, Sig};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use super::Front;
use super::admit::{Admit, Admitted, Client, Denied, Waiting};
use crate::admission::Ticket;
use crate::bridge::REQUEST_REPLY_TIMEOUT;
use crate::bridge::{BackendRequest, BridgeControl, BridgeSettings};
use crate::hostname::Target;
use crate::reject::{Reason, Rejection};
use crate::session::SessionGuard;

/// The terminating fronts' context: the shared admit step and the russh server settings.
pub struct SshFront {
    pub admit: Arc<Admit>,
    pub config: Arc<Config>,
}

impl SshFront {
    /// Runs one SSH connection (front A after TLS, or front C) to its end; the login grace is
    /// enforced beneath. Not an `async fn`, which would keep its arguments (the stream) for
    /// the session's life: what is returned holds only the session and what its end logs.
    pub(crate) fn serve<S>(
        &self,
        stream: S,
        client: Client,
        front: Front,
        sni_target: Option<Result<Target, String>>,
        ticket: Ticket,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handler = EdgeSession::new(
            self.admit.clone(),
            client,
            front,
            sni_target,
            ticket.clone(),
        );
        let starting = Box::pin(russh::server::run_stream(
            self.config.clone(),
            stream,
            handler,
        ));
        let admit = self.admit.clone();
        Box::pin(async move {
            // Its own statement: a `match` keeps its scrutinee's temporaries to its end.
            let started = starting.await;
            let result = async { started?.await }.await;
            match result {
                Ok(()) => {
                    debug!(client = %client.addr, front = front.as_str(), "connection closed")
                }
                // Before authentication a failed transport is a rejection; the deadline's cut
                // is recorded by the caller.
                Err(e) if !ticket.is_authenticated() && !ticket.expired() => admit.reject(
                    &client,
                    &Rejection::new(Reason::SshHandshake, e.to_string()),
                ),
                Err(e) => {
                    debug!(client = %client.addr, front = front.as_str(), error = %e, "connection ended with error")
                }
            }
        })
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One client connection's state.
pub(crate) struct EdgeSession {
    admit: Arc<Admit>,
    client: Client,
    front: Front,
    /// Front A decides the target from SNI before SSH starts; front C parses the user name
    /// (once per distinct name: clients retry auth with the same one).
    target: Option<(String, Result<Target, String>)>,
    sni_target: Option<Result<Target, String>>,
    /// Set when the session must end with this message once authentication completes.
    refusal: Option<String>,
    login: Option<Admitted>,
    channels: HashMap<ChannelId, Arc<BridgeControl>>,
    /// Held while the session is open (counted, and awaited by drain).
    open: Option<SessionGuard>,
    /// The bridge settings of this session's channels (counting into its byte counts).
    bridge: BridgeSettings,
    /// Types of the channels the client opened, for the registry's counts.
    channel_kinds: HashMap<ChannelId, &'static str>,
    /// Open session channels (shells, execs): where lifetime warnings go, as stderr.
    session_channels: Arc<std::sync::Mutex<Vec<ChannelId>>>,
    ticket: Ticket,
    /// Progress lines shown as SSH banners while a workload wakes (the receiver goes to
    /// russh once, see `authentication_progress`).
    banners: tokio::sync::mpsc::Sender<String>,
    banners_out: Option<tokio::sync::mpsc::Receiver<String>>,
}

impl EdgeSession {
    pub(crate) fn new(
        admit: Arc<Admit>,
        client: Client,
        front: Front,
        sni_target: Option<Result<Target, String>>,
        ticket: Ticket,
    ) -> Self {
        let bridge_settings = admit.bridge_settings.clone();
        let (banners, banners_out) = tokio::sync::mpsc::channel(8);
        Self {
            admit,
            client,
            front,
            target: None,
            sni_target,
            refusal: None,
            login: None,
            channels: HashMap::new(),
            open: None,
            bridge: bridge_settings,
            session_channels: Arc::default(),
            channel_kinds: HashMap::new(),
            ticket,
            banners,
            banners_out: Some(banners_out),
        }
    }

    fn target(&mut self, user: &str) -> Result<Target, String> {
        if let Some(t) = &self.sni_target {
            return t.clone();
        }
        match &self.target {
            Some((name, t)) if name == user => t.clone(),
            _ => {
                let t = self.admit.parse_user_target(&self.client, user);
                self.target = Some((user.to_string(), t.clone()));
                t
            }
        }
    }

    /// Remember a message to end the session with; accepting the login is what lets the
    /// client see it (see module docs). No channel can be opened on such a session.
    fn refuse(&mut self, message: String) -> Auth {
        warn!(client = %self.client.addr, front = self.front.as_str(), detail = %message, "refusing session");
        self.refusal = Some(message);
        Auth::Accept
    }

    fn publickey_only() -> Auth {
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        }
    }

    async fn forward(&self, channel: ChannelId, req: BackendRequest) -> bool {
        let Some(control) = self.channels.get(&channel).cloned() else {
            return false;
        };
        let name = req.name();
        let ok = Box::pin(control.request(req)).await;
        if !ok {
            info!(client = %self.client.addr, request = name, "backend refused channel request");
        }
        ok
    }

    /// The command a certificate's `force-command` imposes, if any.
    fn forced_command(&self) -> Option<String> {
        self.login
            .as_ref()
            .and_then(|l| l.identity.force_command.clone())
    }

    /// Counts a channel the client opened in the session's registry entry.
    pub(super) fn channel_opened(&mut self, id: ChannelId, kind: &'static str) {
        if let Some(open) = &self.open {
            open.stats().channel_opened(kind);
            self.channel_kinds.insert(id, kind);
        }
    }

    /// Records an opened channel in the audit stream (`to`: a forward's destination).
    pub(super) fn audit_channel(&self, kind: &str, to: Option<String>) {
        let id = self.open.as_ref().map(SessionGuard::id);
        let mut event = serde_json::json!({ "session": id, "type": kind });
        if let Some(to) = to {
            event["to"] = crate::audit::clean(&to, 300).into();
        }
        self.admit.sessions.audit().emit("channel.open", event);
    }

    fn reply(session: &mut Session, channel: ChannelId, ok: bool) -> Result<(), russh::Error> {
        if ok {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }
}

impl Drop for EdgeSession {
    fn drop(&mut self) {
        if let (Some(open), Some(login)) = (&self.open, &self.login) {
            open.set_end_reason(if login.upstream.handle().is_closed() {
                "backend"
            } else {
                "client"
            });
        }
        if let Some(login) = &self.login {
            info!(client = %self.client.addr, target = %login.target.host, key_id = %login.identity.key_id,
                serial = login.identity.serial, "session closed");
        }
    }
}

impl russh::server::Handler for EdgeSession {
    type Error = russh::Error;

    fn authentication_progress(&mut self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        self.banners_out.take()
    }

    async fn auth_none(&mut self, user: &str) -> Result<Auth, Self::Error> {
        Ok(match self.target(user) {
            Ok(_) => Self::publickey_only(),
            Err(message) => self.refuse(message),
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        warn!(client = %self.client.addr, user, algorithm = %key.algorithm, "plain public key refused: a certificate is required");
        self.admit
            .metrics
            .auth_failures
            .with_label_values(&["not_certificate"])
            .inc();
        Ok(Auth::reject())
    }

    fn auth_certificate_signature_invalid(&mut self, user: &str, cert: &Certificate) {
        let target = self.target(user).map(|t| t.host).unwrap_or_default();
        self.admit.bad_signature(&self.client, &target, cert);
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        cert: &Certificate,
    ) -> Result<Auth, Self::Error> {
        let target = match self.target(user) {
            Ok(t) => t,
            Err(message) => return Ok(self.refuse(message)),
        };
        let admit = self.admit.clone();
        let banners = self.banners.clone();
        // A line that does not fit waits for the next: progress is best effort.
        let progress = move |line: String| {
            let _ = banners.try_send(line);
        };
        let waiting = Waiting {
            progress: &progress,
            ticket: &self.ticket,
        };
        Ok(
            // Boxed: the admission's future (backend login, control plane) would otherwise
            // be inlined into every session's russh task, idle or not.
            match Box::pin(admit.admit_certificate(&self.client, target, cert, waiting)).await {
                Ok(admitted) => {
                    self.login = Some(admitted);
                    Auth::Accept
                }
                Err(Denied::Certificate) => Auth::reject(),
                Err(Denied::Refused(message)) => self.refuse(message),
            },
        )
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        if let Some(message) = &self.refusal {
            session.disconnect(
                Disconnect::ByApplication,
                &format!("ssh-edge: {message}"),
                "en",
            )?;
            return Ok(());
        }
        self.open_session(session);
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(Box::pin(self.remote_forward(address, port)).await)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(Box::pin(self.cancel_remote_forward(address, port)).await)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(Box::pin(self.agent_forward(channel)).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(login) = &self.login else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        let opening = login.upstream.handle().channel_open_session();
        let opened = Box::pin(tokio::time::timeout(REQUEST_REPLY_TIMEOUT, opening)).await;
        let what = format!(
            "a session channel on backend {} for {}",
            login.upstream.addr(),
            login.target.host
        );
        let id = channel.id();
        Box::pin(self.bridge_opened(opened, &what, "opened", channel, reply, session)).await;
        if self.channels.contains_key(&id) {
            lock(&self.session_channels).push(id);
            self.channel_opened(id, "session");
            self.audit_channel("session", None);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let to = (host_to_connect, port_to_connect);
        let from = (originator_address, originator_port);
        Box::pin(self.open_direct_tcpip(channel, to, from, reply, session)).await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
        lock(&self.session_channels).retain(|c| *c != channel);
        if let (Some(kind), Some(open)) = (self.channel_kinds.remove(&channel), &self.open) {
            open.stats().channel_closed(kind);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let permitted = self
            .login
            .as_ref()
            .is_some_and(|l| l.identity.permits("permit-pty"));
        if !permitted {
            info!(client = %self.client.addr, "pty refused: certificate lacks permit-pty");
        }
        let req = BackendRequest::Pty {
            term: term.to_string(),
            cols: col_width,
            rows: row_height,
            pix_width,
            pix_height,
            modes: modes.to_vec(),
        };
        let ok = permitted && self.forward(channel, req).await;
        Self::reply(session, channel, ok)
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let ok = self
            .forward(
                channel,
                BackendRequest::Env {
                    name: name.to_string(),
                    value: value.to_string(),
                },
            )
            .await;
        Self::reply(session, channel, ok)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let req = self.forced_command().map_or(BackendRequest::Shell, |c| {
            BackendRequest::Exec(c.into_bytes())
        });
        let ok = self.forward(channel, req).await;
        Self::reply(session, channel, ok)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let command = self
            .forced_command()
            .map_or_else(|| data.to_vec(), String::into_bytes);
        self.admit.sessions.audit().emit(
            "exec",
            serde_json::json!({
                "session": self.open.as_ref().map(SessionGuard::id),
                "command": crate::audit::clean(&String::from_utf8_lossy(&command), crate::audit::MAX_COMMAND),
            }),
        );
        let ok = self.forward(channel, BackendRequest::Exec(command)).await;
        Self::reply(session, channel, ok)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let req = self.forced_command().map_or_else(
            || BackendRequest::Subsystem(name.to_string()),
            |c| BackendRequest::Exec(c.into_bytes()),
        );
        let ok = self.forward(channel, req).await;
        Self::reply(session, channel, ok)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(control) = self.channels.get(&channel) {
            control
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(control) = self.channels.get(&channel) {
            control.signal(signal).await;
        }
        Ok(())
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        info!(client = %self.client.addr, "X11 forwarding refused: the edge does not forward X11");
        session.channel_failure(channel)
    }
}
