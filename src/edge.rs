//! The running edge: shared state built once from config, the listeners and the per-connection
//! tasks. One connection's failure never touches another: each runs in its own task and every
//! error ends only that task.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use russh::server::Config as ServerConfig;
use russh::{Disconnect, MethodKind, MethodSet, SshId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::auth::cert_policy::CertPolicy;
use crate::bridge::BridgeSettings;
use crate::config::EdgeConfig;
use crate::front::ssh::{EdgeSession, Front};
use crate::front::tls::{self, FirstByte};
use crate::hostname::{HostGrammar, Target};
use crate::metrics::Metrics;
use crate::route::RouteTable;
use crate::upstream::{Connector, preferred_algorithms};

/// Everything a connection needs, shared read-only by all of them: one generation of the
/// configuration. A reload (SIGHUP) builds the next generation with [`Edge::reconfigured`]
/// and swaps it into the [`LiveEdge`]; sessions keep the generation they started with.
pub struct Edge {
    pub grammar: HostGrammar,
    pub routes: RouteTable,
    pub remotes: HashMap<String, Arc<CertPolicy>>,
    pub connector: Connector,
    pub metrics: Arc<Metrics>,
    pub bridge_settings: BridgeSettings,
    pub(crate) tokens: HashMap<String, Arc<crate::auth::token::TokenPolicy>>,
    pub(crate) preamble_timeout: Duration,
    ssh_config: Arc<ServerConfig>,
    /// Becomes true on shutdown: listeners close, `/readyz` answers 503. Shared by all
    /// generations.
    draining: Arc<tokio::sync::watch::Sender<bool>>,
    login_grace: Duration,
    tls: Option<(TlsAcceptor, Duration)>,
}

/// The edge's bound listeners, so callers (tests, the demo) learn the real ports.
pub struct Listeners {
    pub tls: Option<TcpListener>,
    pub ssh: Option<TcpListener>,
    pub admin: Option<TcpListener>,
    pub token_plain: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &EdgeConfig) -> std::io::Result<Self> {
        let bind = |addr: Option<SocketAddr>| async move {
            match addr {
                Some(a) => TcpListener::bind(a).await.map(Some).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot listen on {a}: {e}"))
                }),
                None => Ok(None),
            }
        };
        Ok(Self {
            tls: bind(config.tls_listen).await?,
            ssh: bind(config.ssh_listen).await?,
            admin: bind(config.admin_listen).await?,
            token_plain: bind(config.token_plain_listen).await?,
        })
    }

    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        self.ssh.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn token_plain_addr(&self) -> Option<SocketAddr> {
        self.token_plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }
}

impl Edge {
    pub fn new(config: EdgeConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, rustls::Error> {
        Self::build(
            config,
            metrics,
            Arc::new(tokio::sync::watch::Sender::new(false)),
        )
    }

    /// The next generation: `config` with this edge's metrics and drain state.
    pub fn reconfigured(&self, config: EdgeConfig) -> Result<Arc<Self>, rustls::Error> {
        Self::build(config, self.metrics.clone(), self.draining.clone())
    }

    fn build(
        config: EdgeConfig,
        metrics: Arc<Metrics>,
        draining: Arc<tokio::sync::watch::Sender<bool>>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let ssh = &config.ssh;
        let ssh_config = ServerConfig {
            server_id: SshId::Standard(
                format!("SSH-2.0-ssh-edge_{}", env!("CARGO_PKG_VERSION")).into(),
            ),
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(300),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: ssh.host_keys.clone(),
            certificates: ssh.host_certificates.clone(),
            window_size: ssh.window_size,
            maximum_packet_size: ssh.max_packet_size,
            max_auth_attempts: ssh.max_auth_attempts,
            // Idle sessions are kept alive by keepalives, not cut by an inactivity timer.
            inactivity_timeout: None,
            keepalive_interval: ssh.keepalive_interval,
            keepalive_max: ssh.keepalive_max,
            nodelay: true,
            preferred: preferred_algorithms(),
            // Per-channel flow control: see `bridge`.
            manual_window_adjust: true,
            channel_buffer_size: crate::bridge::channel_queue_depth(ssh.window_size),
            // Certificate validity is the edge's policy (with skew, logged and counted).
            certificate_validity_by_handler: true,
            ..ServerConfig::default()
        };
        let tls = match &config.tls {
            Some(settings) => Some((tls::acceptor(settings)?, settings.handshake_timeout)),
            None => None,
        };
        let connector = Connector::new(Arc::new(config.backend), &config.ssh, metrics.clone());
        let bridge_settings = BridgeSettings {
            up_bytes: metrics.bytes("up"),
            down_bytes: metrics.bytes("down"),
            channels_active: metrics.channels_active.clone(),
            window_size: ssh.window_size,
        };
        Ok(Arc::new(Self {
            grammar: config.grammar,
            routes: config.routes,
            remotes: config.remotes,
            connector,
            metrics,
            bridge_settings,
            tokens: config.tokens,
            preamble_timeout: config.preamble_timeout,
            ssh_config: Arc::new(ssh_config),
            login_grace: config.ssh.login_grace,
            tls,
            draining,
        }))
    }

    /// Stops accepting connections (listeners close, `/readyz` turns 503); open sessions go on.
    pub fn start_drain(&self) {
        self.draining.send_replace(true);
    }

    /// Waits until no session is open, at most `timeout`; true when they all ended.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.metrics.sessions_active.get() > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    /// Serves the listeners until the process ends, always with this generation.
    pub async fn serve(self: Arc<Self>, listeners: Listeners) {
        LiveEdge::new(self).serve(listeners).await
    }

    fn reject(&self, front: Front, reason: &str, peer: SocketAddr, detail: &str) {
        self.metrics
            .rejections
            .with_label_values(&[front.as_str(), reason])
            .inc();
        info!(peer = %peer, front = front.as_str(), reason, detail, "connection rejected");
    }

    async fn handle_tls(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let Some((acceptor, timeout)) = &self.tls else {
            return;
        };
        let tls = match tokio::time::timeout(*timeout, acceptor.accept(tls::buffered(stream))).await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.reject(Front::Tls, "tls_handshake", peer, &e.to_string()),
            Err(_) => {
                return self.reject(Front::Tls, "tls_timeout", peer, "no TLS handshake in time");
            }
        };
        let sni = tls.get_ref().1.server_name().map(str::to_owned);
        let (first, stream) = match tokio::time::timeout(*timeout, tls::read_first_byte(tls)).await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.reject(Front::Tls, "read_error", peer, &e.to_string()),
            Err(_) => {
                return self.reject(
                    Front::Tls,
                    "silent_client",
                    peer,
                    "nothing sent after the TLS handshake",
                );
            }
        };
        match first {
            FirstByte::Ssh => {}
            FirstByte::Eof => {
                return self.reject(Front::Tls, "eof", peer, "closed after the TLS handshake");
            }
            // Anything but `S` is the length prefix of a token preamble (front B).
            FirstByte::Other(_) => return self.serve_token(stream, peer).await,
        }
        let target = match sni {
            Some(name) => self.grammar.parse_host(&name).map_err(|e| {
                self.metrics
                    .rejections
                    .with_label_values(&[Front::Tls.as_str(), e.reason()])
                    .inc();
                e.to_string()
            }),
            None => {
                self.metrics
                    .rejections
                    .with_label_values(&[Front::Tls.as_str(), "no_sni"])
                    .inc();
                Err(format!(
                    "TLS without SNI: set the server name to the workload host (e.g. ssh-edge connect %h, or openssl s_client -servername %h); expected {}",
                    self.grammar.expected()
                ))
            }
        };
        self.run_ssh(stream, peer, Front::Tls, Some(target)).await;
    }

    async fn run_ssh<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        front: Front,
        sni_target: Option<Result<Target, String>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let handler = EdgeSession::new(self.clone(), peer, front, sni_target);
        let authenticated = handler.authenticated_flag();
        // run_stream reads the client's identification line before returning: bound it.
        let started = russh::server::run_stream(self.ssh_config.clone(), stream, handler);
        let running = match tokio::time::timeout(self.login_grace, started).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.reject(front, "ssh_handshake", peer, &e.to_string()),
            Err(_) => {
                return self.reject(front, "ssh_timeout", peer, "no SSH identification in time");
            }
        };
        let handle = running.handle();
        let grace = self.login_grace;
        let watchdog = tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if !authenticated.load(Ordering::Relaxed) {
                let _ = handle
                    .disconnect(
                        Disconnect::ByApplication,
                        "ssh-edge: login grace time exceeded".into(),
                        "en".into(),
                    )
                    .await;
            }
        });
        match running.await {
            Ok(()) => debug!(peer = %peer, front = front.as_str(), "connection closed"),
            Err(e) => {
                debug!(peer = %peer, front = front.as_str(), error = %e, "connection ended with error")
            }
        }
        watchdog.abort();
    }
}

/// The generation in force. The accept loops read it for every new connection, so a reload
/// ([`LiveEdge::replace`]) takes effect for the next connection without touching open ones.
#[derive(Clone)]
pub struct LiveEdge(Arc<std::sync::RwLock<Arc<Edge>>>);

impl LiveEdge {
    pub fn new(edge: Arc<Edge>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(edge)))
    }

    pub fn current(&self) -> Arc<Edge> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn replace(&self, edge: Arc<Edge>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = edge;
    }

    /// Serves the listeners until the process ends (or the edge drains).
    pub async fn serve(self, listeners: Listeners) {
        let edge = self.current();
        let mut tasks = Vec::new();
        for (listener, front) in [
            (listeners.ssh, Front::Ssh),
            (listeners.tls, Front::Tls),
            (listeners.token_plain, Front::TokenPlain),
        ] {
            if let Some(l) = listener {
                tasks.push(tokio::spawn(self.clone().accept_loop(l, front)));
            }
        }
        if let Some(l) = listeners.admin {
            tasks.push(tokio::spawn(crate::admin::serve(
                l,
                edge.metrics.clone(),
                edge.draining.subscribe(),
            )));
        }
        for t in tasks {
            let _ = t.await;
        }
    }

    async fn accept_loop(self, listener: TcpListener, front: Front) {
        let mut draining = self.current().draining.subscribe();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = draining.wait_for(|d| *d) => {
                    info!(front = front.as_str(), "draining: listener closed");
                    return;
                }
            };
            let (stream, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(front = front.as_str(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let edge = self.current();
            edge.metrics
                .connections
                .with_label_values(&[front.as_str()])
                .inc();
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                match front {
                    Front::Ssh => edge.run_ssh(stream, peer, Front::Ssh, None).await,
                    Front::Tls => edge.handle_tls(stream, peer).await,
                    Front::TokenPlain => edge.serve_token(stream, peer).await,
                }
            });
        }
    }
}
