//! The russh server handler for the terminating fronts (A: TLS+SNI, C: plain SSH).
//!
//! Kept thin: it decides the target, applies the certificate policy, logs in to the backend and
//! hands each channel to [`crate::bridge`]. Problems the user must hear about (a malformed host
//! name, an unreachable backend) are delivered as an SSH disconnect message right after the
//! authentication step, because SSH has no earlier place to put text a client will show.

#[path = "ssh_forwarding.rs"]
mod forwarding;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::Certificate;
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty, Sig};
use tracing::{info, warn};

use crate::auth::cert_policy::{CertCheck, CertIdentity, check_user_certificate};
use crate::bridge::{BackendRequest, BridgeControl};
use crate::edge::Edge;
use crate::hostname::Target;
use crate::route::{Forwarding, Route};
use crate::upstream::{ClientLink, LoginContext, REQUEST_REPLY_TIMEOUT, Upstream};

/// Which public door a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// TLS with SNI naming the workload.
    Tls,
    /// Plain SSH with the workload in the user name.
    Ssh,
    /// Front B's token preamble on plain TCP (the helpers' "insecure" switch).
    TokenPlain,
}

impl Front {
    pub fn as_str(self) -> &'static str {
        match self {
            Front::Tls => "tls",
            Front::Ssh => "ssh",
            Front::TokenPlain => "token_plain",
        }
    }
}

struct Login {
    target: Target,
    identity: CertIdentity,
    upstream: Upstream,
    /// Forwarding allowed by the route, its remote and the certificate's extensions, all.
    forwarding: Forwarding,
}

/// One client connection's state.
pub struct EdgeSession {
    edge: Arc<Edge>,
    peer: SocketAddr,
    front: Front,
    /// Front A decides the target from SNI before SSH starts; front C leaves this `None` and
    /// parses the user name.
    sni_target: Option<Result<Target, String>>,
    /// Set when the session must end with this message once authentication completes.
    refusal: Option<String>,
    login: Option<Login>,
    channels: HashMap<ChannelId, Arc<BridgeControl>>,
    counted: bool,
    authenticated: Arc<AtomicBool>,
}

impl EdgeSession {
    pub fn new(
        edge: Arc<Edge>,
        peer: SocketAddr,
        front: Front,
        sni_target: Option<Result<Target, String>>,
    ) -> Self {
        Self {
            edge,
            peer,
            front,
            sni_target,
            refusal: None,
            login: None,
            channels: HashMap::new(),
            counted: false,
            authenticated: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Flag the connection runner watches for the login grace time.
    pub fn authenticated_flag(&self) -> Arc<AtomicBool> {
        self.authenticated.clone()
    }

    fn target(&self, user: &str) -> Result<Target, String> {
        match &self.sni_target {
            Some(t) => t.clone(),
            None => self.edge.grammar.parse_user_target(user).map_err(|e| {
                self.edge
                    .metrics
                    .rejections
                    .with_label_values(&[self.front.as_str(), e.reason()])
                    .inc();
                e.to_string()
            }),
        }
    }

    /// Remember a message to end the session with; accepting the login is what lets the
    /// client see it (see module docs). No channel can be opened on such a session.
    fn refuse(&mut self, message: String) -> Auth {
        warn!(peer = %self.peer, front = self.front.as_str(), %message, "refusing session");
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
        let ok = control.request(req).await;
        if !ok {
            info!(peer = %self.peer, request = name, "backend refused channel request");
        }
        ok
    }

    /// The command a certificate's `force-command` imposes, if any.
    fn forced_command(&self) -> Option<String> {
        self.login
            .as_ref()
            .and_then(|l| l.identity.force_command.clone())
    }

    fn reply(session: &mut Session, channel: ChannelId, ok: bool) -> Result<(), russh::Error> {
        if ok {
            session.channel_success(channel)
        } else {
            session.channel_failure(channel)
        }
    }

    async fn check_and_connect(
        &mut self,
        target: Target,
        route: Route,
        cert: &Certificate,
    ) -> Auth {
        let edge = self.edge.clone();
        let Some(policy) = edge.remotes.get(target.remote_name()) else {
            return self.refuse(format!(
                "{}: remote \"{}\" has no certificate policy",
                target.host,
                target.remote_name()
            ));
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let check = CertCheck {
            cert,
            required_principal: &route.required_principal,
            peer_ip: self.peer.ip(),
            now_unix: now,
        };
        let identity = match check_user_certificate(policy, &check) {
            Ok(identity) => identity,
            Err(rejection) => {
                warn!(peer = %self.peer, front = self.front.as_str(), target = %target.host, key_id = cert.key_id(),
                    serial = cert.serial(), reason = rejection.reason(), detail = %rejection, "certificate refused");
                edge.metrics
                    .auth_failures
                    .with_label_values(&[rejection.reason()])
                    .inc();
                return Auth::reject();
            }
        };
        let who = LoginContext {
            user_key_id: identity.key_id.clone(),
            user_serial: identity.serial,
            user_key_fingerprint: cert
                .public_key()
                .fingerprint(russh::keys::HashAlg::Sha256)
                .to_string(),
            target_host: target.host.clone(),
        };
        match edge.connector.connect(&route, &who).await {
            Ok(upstream) => {
                info!(peer = %self.peer, front = self.front.as_str(), target = %target.host, key_id = %identity.key_id,
                    serial = identity.serial, backend = %upstream.addr(), shared = upstream.reused, login_user = %route.login_user, "session authorized");
                // As OpenSSH: permit-port-forwarding covers -L, -D and -R.
                let by_certificate = Forwarding {
                    local: identity.permits("permit-port-forwarding"),
                    remote: identity.permits("permit-port-forwarding"),
                    agent: identity.permits("permit-agent-forwarding"),
                };
                self.login = Some(Login {
                    target,
                    identity,
                    upstream,
                    forwarding: route.forwarding.and(by_certificate),
                });
                Auth::Accept
            }
            Err(e) => self.refuse(format!("{}: {e}", target.host)),
        }
    }
}

impl Drop for EdgeSession {
    fn drop(&mut self) {
        if self.counted {
            self.edge.metrics.sessions_active.dec();
        }
        if let Some(login) = &self.login {
            info!(peer = %self.peer, target = %login.target.host, key_id = %login.identity.key_id,
                serial = login.identity.serial, "session closed");
        }
    }
}

impl russh::server::Handler for EdgeSession {
    type Error = russh::Error;

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
        warn!(peer = %self.peer, user, algorithm = %key.algorithm, "plain public key refused: a certificate is required");
        self.edge
            .metrics
            .auth_failures
            .with_label_values(&["not_certificate"])
            .inc();
        Ok(Auth::reject())
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
        let route = match self.edge.routes.resolve(&target) {
            Ok(r) => r,
            Err(e) => {
                self.edge
                    .metrics
                    .rejections
                    .with_label_values(&[self.front.as_str(), e.reason()])
                    .inc();
                return Ok(self.refuse(e.to_string()));
            }
        };
        Ok(self.check_and_connect(target, route, cert).await)
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.authenticated.store(true, Ordering::Relaxed);
        if let Some(message) = &self.refusal {
            session.disconnect(
                Disconnect::ByApplication,
                &format!("ssh-edge: {message}"),
                "en",
            )?;
            return Ok(());
        }
        self.edge
            .metrics
            .logins
            .with_label_values(&[self.front.as_str()])
            .inc();
        self.edge.metrics.sessions_active.inc();
        self.counted = true;
        if let Some(login) = &mut self.login {
            login.upstream.attach(ClientLink {
                handle: session.handle(),
                bridge: self.edge.bridge_settings.clone(),
                forwarding: login.forwarding,
            });
        }
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.remote_forward(address, port).await)
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.cancel_remote_forward(address, port).await)
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.agent_forward(channel).await)
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
        let opened = tokio::time::timeout(
            REQUEST_REPLY_TIMEOUT,
            login.upstream.handle().channel_open_session(),
        )
        .await;
        let what = format!(
            "a session channel on backend {} for {}",
            login.upstream.addr(),
            login.target.host
        );
        self.bridge_opened(opened, &what, "opened", channel, reply, session)
            .await;
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
        self.open_direct_tcpip(
            channel,
            to,
            (originator_address, originator_port),
            reply,
            session,
        )
        .await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.remove(&channel);
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
            info!(peer = %self.peer, "pty refused: certificate lacks permit-pty");
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
        session.channel_failure(channel)
    }
}
