//! The edge as an SSH client of backend sshd: connect within the timeout, verify the backend's
//! host key, log in with a per-session certificate minted from the edge CA (or a fixed key).

mod host_key;
mod links;
mod mint;
mod pool;

use std::sync::Arc;
use std::time::Instant;

use russh::client;
use russh::keys::PrivateKeyWithHashAlg;
use russh::{ChannelOpenFailure, Preferred, cipher};
use tokio::net::TcpStream;

pub(crate) use host_key::BackendKeyCheck;
pub use links::{ClientLink, ClientLinks};
pub use mint::{MintRequest, mint_backend_certificate, random_ed25519_key};
pub(crate) use pool::{BackendConn, Pool, ShareKey, Upstream};

use crate::bridge::REQUEST_REPLY_TIMEOUT;
use crate::config::{BackendLogin, BackendSettings, SshSettings};
use crate::metrics::Metrics;
use crate::route::Route;
use crate::route::dns::{BackendResolver, Endpoint, ResolveError};

/// Why a backend could not be used. Shown to the user (it names the target, never secrets).
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("cannot resolve backend address {addr}: {reason}")]
    Resolve { addr: String, reason: String },
    /// The backend's name does not exist (NXDOMAIN): the workload is not there.
    #[error("{0}")]
    NotFound(String),
    #[error("cannot connect to backend {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("backend {addr} did not answer within {secs}s")]
    Timeout { addr: String, secs: u64 },
    #[error("backend {addr} host key rejected: {reason}")]
    HostKey { addr: String, reason: String },
    #[error("SSH handshake with backend {addr} failed: {reason}")]
    Handshake { addr: String, reason: String },
    #[error("backend {addr} refused the edge's login as user \"{user}\"")]
    LoginRefused { addr: String, user: String },
    #[error("cannot mint backend certificate: {0}")]
    Mint(String),
}

impl UpstreamError {
    /// Stable label for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Resolve { .. } => "resolve",
            UpstreamError::NotFound(_) => "not_found",
            UpstreamError::Connect { .. } => "connect",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::HostKey { .. } => "host_key",
            UpstreamError::Handshake { .. } => "handshake",
            UpstreamError::LoginRefused { .. } => "login_refused",
            UpstreamError::Mint(_) => "mint",
        }
    }
}

/// Who is behind a backend login, written into the minted certificate's key id so that the
/// backend's own logs name the user.
#[derive(Debug, Clone)]
pub(crate) struct LoginContext {
    pub user_key_id: String,
    pub user_serial: u64,
    /// SHA256 fingerprint of the user's certificate key; with key id and serial it decides
    /// which logins may share a backend connection.
    pub user_key_fingerprint: String,
    pub target_host: String,
}

/// Makes backend connections; one per edge, shared by all sessions.
pub struct Connector {
    settings: Arc<BackendSettings>,
    client_config: Arc<client::Config>,
    metrics: Arc<Metrics>,
    /// Shared backend connections, when `backend.multiplex` is on.
    pool: Option<Arc<Pool>>,
    /// Backend names → addresses, cached.
    resolver: BackendResolver,
}

/// Algorithms for both hops: AES-GCM only (hardware accelerated, AEAD, no separate MAC), and
/// no compression. Offering only GCM matters on the server side: SSH picks the first cipher in
/// the *client's* list that the server supports, and OpenSSH clients list chacha20 and the CTR
/// modes before GCM. Every OpenSSH since 6.2 (2013) speaks AES-GCM.
pub(crate) fn preferred_algorithms() -> Preferred {
    Preferred {
        cipher: std::borrow::Cow::Borrowed(&[cipher::AES_128_GCM, cipher::AES_256_GCM]),
        compression: std::borrow::Cow::Borrowed(&[russh::compression::NONE]),
        ..Preferred::default()
    }
}

impl Connector {
    pub(crate) fn new(
        settings: Arc<BackendSettings>,
        ssh: &SshSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut preferred = preferred_algorithms();
        if !settings.host_keys.host_cas.is_empty() {
            // Ask backends for their host certificates (the plain-key algorithms' cert
            // variants, advertised ahead of plain keys); backends without one answer with
            // their key.
            preferred.host_key_certificates = preferred.key.clone();
        }
        let client_config = client::Config {
            window_size: ssh.window_size,
            maximum_packet_size: ssh.max_packet_size,
            keepalive_interval: ssh.keepalive_interval,
            keepalive_max: ssh.keepalive_max,
            inactivity_timeout: None,
            nodelay: true,
            preferred,
            // Per-channel flow control: see `bridge`.
            manual_window_adjust: true,
            channel_buffer_size: crate::bridge::channel_queue_depth(ssh.window_size),
            ..client::Config::default()
        };
        let pool = settings.multiplex.map(|m| Pool::new(m.idle, m.max_clients));
        let resolver = BackendResolver::new(&settings.dns, metrics.clone());
        Self {
            resolver,
            settings,
            client_config: Arc::new(client_config),
            metrics,
            pool,
        }
    }

    /// A logged-in backend connection for this user: a shared one when multiplexing finds
    /// one for the same login, else a new one (connected and logged in within the connect
    /// timeout, and offered for sharing).
    pub(crate) async fn connect(
        &self,
        route: &Route,
        who: &LoginContext,
    ) -> Result<Upstream, UpstreamError> {
        let pooled = self
            .pool
            .as_ref()
            .map(|pool| (pool.clone(), ShareKey::new(route, who)));
        if let Some((pool, key)) = &pooled
            && let Some(conn) = pool.checkout(key)
        {
            self.metrics
                .backend_logins
                .with_label_values(&["shared"])
                .inc();
            return Ok(Upstream::new(conn, pooled, true));
        }
        let conn = Arc::new(self.connect_new(route, who).await?);
        self.metrics
            .backend_logins
            .with_label_values(&["new"])
            .inc();
        if let Some((pool, key)) = &pooled {
            pool.insert(key.clone(), conn.clone());
        }
        Ok(Upstream::new(conn, pooled, false))
    }

    /// Connects and logs in, all within the configured connect timeout.
    async fn connect_new(
        &self,
        route: &Route,
        who: &LoginContext,
    ) -> Result<BackendConn, UpstreamError> {
        self.timed(&route.backend_addr, self.connect_inner(route, who))
            .await
    }

    /// Resolves `addr` (see `route::dns`) and connects to the first endpoint that answers
    /// (no timeout of its own). Returns the endpoint's name, for the host-key check.
    async fn tcp(&self, addr: &str) -> Result<(TcpStream, Endpoint), UpstreamError> {
        let endpoints = self.resolver.resolve(addr).await.map_err(|e| match e {
            ResolveError::NotFound { .. } => UpstreamError::NotFound(e.to_string()),
            ResolveError::Failed { reason, .. } => UpstreamError::Resolve {
                addr: addr.to_string(),
                reason,
            },
            ResolveError::Invalid { .. } => UpstreamError::Resolve {
                addr: addr.to_string(),
                reason: e.to_string(),
            },
        })?;
        let mut last_err = None;
        for endpoint in endpoints {
            match TcpStream::connect(endpoint.addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, endpoint));
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(UpstreamError::Connect {
            addr: addr.to_string(),
            reason: last_err.map_or_else(|| "no addresses".to_string(), |e| e.to_string()),
        })
    }

    /// A plain TCP connection to a backend for passthrough (front B): resolved and connected
    /// within the connect timeout, timed and counted like SSH logins.
    pub(crate) async fn connect_stream(&self, addr: &str) -> Result<TcpStream, UpstreamError> {
        self.timed(addr, async { self.tcp(addr).await.map(|(s, _)| s) })
            .await
    }

    /// Whether the backend accepts a TCP connection now (a waking workload's readiness probe):
    /// within the connect timeout, not counted as a backend failure.
    pub(crate) async fn probe(&self, addr: &str) -> bool {
        matches!(
            tokio::time::timeout(self.settings.connect_timeout, self.tcp(addr)).await,
            Ok(Ok(_))
        )
    }

    /// Runs one backend connection attempt under the connect timeout, observing its duration
    /// and counting its failure.
    async fn timed<T>(
        &self,
        addr: &str,
        attempt: impl std::future::Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        let started = Instant::now();
        let timeout = self.settings.connect_timeout;
        let result = match tokio::time::timeout(timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                addr: addr.to_string(),
                secs: timeout.as_secs(),
            }),
        };
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .backend_connect_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            self.metrics
                .backend_failures
                .with_label_values(&[e.reason()])
                .inc();
        }
        result
    }

    async fn connect_inner(
        &self,
        route: &Route,
        who: &LoginContext,
    ) -> Result<BackendConn, UpstreamError> {
        let addr = route.backend_addr.clone();
        let (stream, endpoint) = self.tcp(&addr).await?;

        let check = BackendKeyCheck::new(
            self.settings.host_keys.clone(),
            &endpoint.host,
            endpoint.port,
        );
        let verdict = check.verdict();
        let links = Arc::new(ClientLinks::default());
        let handler = BackendHandler {
            key_check: check,
            links: links.clone(),
        };
        let mut handle =
            match client::connect_stream(self.client_config.clone(), stream, handler).await {
                Ok(h) => h,
                Err(e) => {
                    if let Some(reason) = verdict.lock().ok().and_then(|v| v.clone()) {
                        return Err(UpstreamError::HostKey { addr, reason });
                    }
                    return Err(UpstreamError::Handshake {
                        addr,
                        reason: e.to_string(),
                    });
                }
            };

        let user = route.login_user.clone();
        let auth = match &self.settings.login {
            BackendLogin::EdgeCa { ca, validity } => {
                let key = random_ed25519_key();
                let cert = mint_backend_certificate(
                    ca,
                    &MintRequest {
                        subject: &key,
                        principal: &route.backend_principal,
                        key_id: &format!(
                            "ssh-edge user_key_id={} serial={} target={}",
                            who.user_key_id, who.user_serial, who.target_host
                        ),
                        validity: *validity,
                    },
                )
                .map_err(|e| UpstreamError::Mint(e.to_string()))?;
                handle
                    .authenticate_openssh_cert(user.clone(), Arc::new(key), cert)
                    .await
            }
            BackendLogin::Key(key) => {
                handle
                    .authenticate_publickey(
                        user.clone(),
                        PrivateKeyWithHashAlg::new(Arc::new(key.clone()), None),
                    )
                    .await
            }
        };
        match auth {
            Ok(r) if r.success() => Ok(BackendConn::new(handle, addr, links)),
            Ok(_) => Err(UpstreamError::LoginRefused { addr, user }),
            Err(e) => Err(UpstreamError::Handshake {
                addr,
                reason: e.to_string(),
            }),
        }
    }
}

/// russh client handler for backend connections: verifies the host key and carries channels
/// the backend opens (remote-forwarded connections, agent requests) back to the user when the
/// user's certificate permits them; everything else the backend opens is refused.
pub(crate) struct BackendHandler {
    key_check: BackendKeyCheck,
    /// The user connections this backend connection serves.
    links: Arc<ClientLinks>,
}

/// Opens the matching channel on the user's connection and bridges the two. Runs in its own
/// task: waiting for the user inside the backend's callback would stall the backend connection.
fn relay_to_client<F>(
    link: ClientLink,
    backend: russh::Channel<client::Msg>,
    reply: client::ChannelOpenHandle,
    open: F,
) where
    F: std::future::Future<Output = Result<russh::Channel<russh::server::Msg>, russh::Error>>
        + Send
        + 'static,
{
    tokio::spawn(async move {
        match tokio::time::timeout(REQUEST_REPLY_TIMEOUT, open).await {
            Ok(Ok(client_channel)) => {
                reply.accept().await;
                crate::bridge::start(
                    client_channel,
                    backend,
                    link.handle.clone(),
                    link.bridge.clone(),
                );
            }
            _ => reply.reject(ChannelOpenFailure::ConnectFailed).await,
        }
    });
}

impl client::Handler for BackendHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(self.key_check.check(key))
    }

    /// A connection to a port the user asked the backend to listen on (`ssh -R`).
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let link = self
            .links
            .for_forwarded_tcpip(connected_address, connected_port)
            .filter(|l| l.forwarding.remote);
        match link {
            Some(link) => {
                let handle = link.handle.clone();
                let (ca, oa) = (
                    connected_address.to_string(),
                    originator_address.to_string(),
                );
                let open = async move {
                    handle
                        .channel_open_forwarded_tcpip(ca, connected_port, oa, originator_port)
                        .await
                };
                relay_to_client(link, channel, reply, open);
            }
            None => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await
            }
        }
        Ok(())
    }

    /// The backend's sshd asking for the user's agent (`ssh -A`, then `ssh-add -l` inside).
    async fn server_channel_open_agent_forward(
        &mut self,
        channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        match self.links.for_agent().filter(|l| l.forwarding.agent) {
            Some(link) => {
                let handle = link.handle.clone();
                relay_to_client(link, channel, reply, async move {
                    handle.channel_open_agent().await
                });
            }
            None => {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await
            }
        }
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: russh::Channel<client::Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }
}
