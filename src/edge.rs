//! The running edge: shared state built once from config, the listeners and the per-connection
//! tasks. One connection's failure never touches another: each runs in its own task and every
//! error ends only that task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::server::Config as ServerConfig;
use russh::{MethodKind, MethodSet, SshId};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tracing::{info, warn};

use crate::admission::Admission;
use crate::auth::token::ReplayCache;
use crate::bridge::BridgeSettings;
use crate::config::EdgeConfig;
use crate::control_plane::ControlPlane;
use crate::front::Fronts;
use crate::front::admit::Admit;
use crate::front::ssh::SshFront;
use crate::front::tls::{self, TlsFront};
use crate::front::token::TokenFront;
use crate::metrics::Metrics;
use crate::reject::{self, Listener};
use crate::session::Sessions;
use crate::upstream::{Connector, preferred_algorithms};

/// One generation of the configuration, shared read-only by the connections it accepts: the
/// admission pipeline and the fronts. A reload (SIGHUP) builds the next generation with
/// [`Edge::reconfigured`] and swaps it into the [`LiveEdge`]; sessions keep the generation
/// they started with.
pub struct Edge {
    pub admission: Arc<Admission>,
    pub fronts: Arc<Fronts>,
    pub metrics: Arc<Metrics>,
    /// Open sessions, shared by all generations.
    pub sessions: Arc<Sessions>,
    /// Bearer token of the admin endpoint.
    admin_token: Option<Arc<str>>,
    /// Becomes true on shutdown: listeners close, `/readyz` answers 503. Shared by all
    /// generations.
    draining: Arc<tokio::sync::watch::Sender<bool>>,
}

/// The edge's bound listeners, so callers (tests, the demo) learn the real ports.
pub struct Listeners {
    pub tls: Option<TcpListener>,
    pub ssh: Option<TcpListener>,
    pub admin: Option<TcpListener>,
    pub token_plain: Option<TcpListener>,
    /// `listen.workers`: the connection worker threads to start (0: one per core).
    pub workers: usize,
}

impl Listeners {
    pub async fn bind(config: &EdgeConfig) -> std::io::Result<Self> {
        let backlog = config.listen_backlog;
        let bind = |addr: Option<SocketAddr>| async move {
            match addr {
                Some(a) => listen(a, backlog).map(Some).map_err(|e| {
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
            workers: config.workers,
        })
    }

    pub(crate) fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn ssh_addr(&self) -> Option<SocketAddr> {
        self.ssh.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub(crate) fn token_plain_addr(&self) -> Option<SocketAddr> {
        self.token_plain.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub(crate) fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }
}

impl Edge {
    pub fn new(config: EdgeConfig, metrics: Arc<Metrics>) -> Result<Arc<Self>, rustls::Error> {
        let admission = Arc::new(Admission::new(
            config.admission.clone(),
            metrics.unauthenticated.clone(),
        ));
        let audit = match crate::audit::Audit::start(&config.audit, metrics.audit_dropped.clone()) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "audit stream off: cannot open its sink");
                crate::audit::Audit::off()
            }
        };
        let sessions = Sessions::observed(
            metrics.sessions_active.clone(),
            Some(metrics.sessions_ended.clone()),
            Arc::new(audit),
        );
        Self::build(
            config,
            metrics,
            Arc::new(tokio::sync::watch::Sender::new(false)),
            admission,
            sessions,
            None,
            None,
        )
    }

    /// The next generation: `config` with this edge's metrics, drain state and (when the
    /// limits are unchanged) live pre-auth counts.
    pub(crate) fn reconfigured(&self, config: EdgeConfig) -> Result<Arc<Self>, rustls::Error> {
        let admission = Arc::new(self.admission.reconfigured(config.admission.clone()));
        Self::build(
            config,
            self.metrics.clone(),
            self.draining.clone(),
            admission,
            self.sessions.clone(),
            self.fronts.ssh.admit.control_plane.clone(),
            self.fronts.token.admit.token_replay.clone(),
        )
    }

    fn build(
        config: EdgeConfig,
        metrics: Arc<Metrics>,
        draining: Arc<tokio::sync::watch::Sender<bool>>,
        admission: Arc<Admission>,
        sessions: Arc<Sessions>,
        previous_control_plane: Option<Arc<ControlPlane>>,
        previous_token_replay: Option<Arc<std::sync::Mutex<ReplayCache>>>,
    ) -> Result<Arc<Self>, rustls::Error> {
        crate::front::token::create_series(&metrics);
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
        let admin_token = config.admin_token.as_deref().map(Arc::from);
        let tls = match &config.tls {
            Some(settings) => Some(TlsFront {
                acceptor: tls::acceptor(settings)?,
                handshake_timeout: settings.handshake_timeout,
            }),
            None => None,
        };
        let connector = Arc::new(Connector::new(
            Arc::new(config.backend),
            &config.ssh,
            metrics.clone(),
        ));
        // Unchanged settings keep the control plane, its cache and the wake-ups in progress.
        let control_plane = match (config.control_plane, previous_control_plane) {
            (None, _) => None,
            (Some(settings), Some(previous)) if *previous.settings() == settings => Some(previous),
            (Some(settings), _) => Some(ControlPlane::new(settings, metrics.clone())?),
        };
        let bridge_settings = BridgeSettings {
            up_bytes: crate::bytes_count::ByteCounter::new(metrics.bytes("up")),
            down_bytes: crate::bytes_count::ByteCounter::new(metrics.bytes("down")),
            channels_active: metrics.channels_active.clone(),
            window_size: ssh.window_size,
        };
        // The used token ids outlive a reload (a reload must not reopen replays).
        let token_replay = config
            .token_replay_entries
            .map(|entries| match previous_token_replay {
                Some(previous) => {
                    previous
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .set_capacity(entries);
                    previous
                }
                None => Arc::new(std::sync::Mutex::new(ReplayCache::new(entries))),
            });
        let admit = Arc::new(Admit {
            grammar: config.grammar,
            routes: config.routes,
            remotes: config.remotes,
            tokens: config.tokens,
            connector,
            control_plane,
            metrics: metrics.clone(),
            bridge_settings,
            sessions: sessions.clone(),
            token_replay,
        });
        let fronts = Arc::new(Fronts {
            ssh: SshFront {
                admit: admit.clone(),
                config: Arc::new(ssh_config),
            },
            token: TokenFront {
                admit,
                preamble_timeout: config.preamble_timeout,
            },
            tls,
        });
        Ok(Arc::new(Self {
            admission,
            fronts,
            metrics,
            sessions,
            admin_token,
            draining,
        }))
    }

    /// Stops accepting connections (listeners close, `/readyz` turns 503); open sessions go on.
    pub(crate) fn start_drain(&self) {
        self.draining.send_replace(true);
    }

    /// Ends the open sessions whose certificate this generation revokes (by serial or key id
    /// of its remote); returns how many. Run after a reload (`auth.kill_revoked_sessions`).
    pub(crate) fn end_revoked_sessions(&self) -> usize {
        let admit = &self.fronts.ssh.admit;
        let mut ended = 0;
        for s in self.sessions.list(&crate::session::Selector::default()) {
            let Some(policy) = admit.remotes.get(&s.remote) else {
                continue;
            };
            let revoked = s
                .serial
                .is_some_and(|n| policy.revoked_serials.contains(&n))
                || s.key_id
                    .as_ref()
                    .is_some_and(|k| policy.revoked_key_ids.contains(k));
            if revoked
                && self
                    .sessions
                    .end(s.id, "revoked", "session ended: certificate revoked")
            {
                ended += 1;
            }
        }
        ended
    }

    /// Waits until no session is open, at most `timeout`; true when they all ended.
    pub(crate) async fn wait_drained(&self, timeout: Duration) -> bool {
        self.sessions.wait_empty(timeout).await
    }

    /// Serves the listeners until the process ends, always with this generation.
    pub async fn serve(self: Arc<Self>, listeners: Listeners) {
        LiveEdge::new(self).serve(listeners).await
    }

    /// One accepted connection: admission, then the fronts of this generation.
    async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, listener: Listener) {
        // Boxed, and awaited in a statement of its own (a `match` keeps its scrutinee's
        // temporaries to its end): the admission's state is not kept for the connection's
        // lifetime.
        let admitted = Box::pin(self.admission.admit(stream, peer, listener)).await;
        match admitted {
            Ok(entry) => {
                if let Some(version) = entry.proxy {
                    self.metrics
                        .proxy_headers
                        .with_label_values(&[version])
                        .inc();
                }
                self.fronts.clone().serve(entry, listener).await
            }
            Err(refused) => {
                reject::record(&self.metrics, listener, refused.client, &refused.rejection);
                // Closed once counted: whoever sees the close finds the count already there.
                drop(refused.connection);
            }
        }
    }
}

/// The generation in force. The accept loops read it for every new connection, so a reload
/// ([`LiveEdge::replace`]) takes effect for the next connection without touching open ones.
#[derive(Clone)]
pub struct LiveEdge(Arc<std::sync::RwLock<Arc<Edge>>>);

impl LiveEdge {
    pub(crate) fn new(edge: Arc<Edge>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(edge)))
    }

    pub fn current(&self) -> Arc<Edge> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace(&self, edge: Arc<Edge>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = edge;
    }

    /// Serves the listeners until this future is dropped (a stopped server) or the process ends.
    pub async fn serve(self, listeners: Listeners) {
        let edge = self.current();
        let workers = match crate::workers::Workers::start(listeners.workers) {
            Ok(w) => Arc::new(w),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the connection worker threads");
                return;
            }
        };
        info!(workers = workers.len(), "connection workers started");
        // Every task of this server in one set: dropping `serve` (a stopped server) ends them.
        let mut tasks = tokio::task::JoinSet::new();
        for (listener, kind) in [
            (listeners.ssh, Listener::Ssh),
            (listeners.tls, Listener::Tls),
            (listeners.token_plain, Listener::TokenPlain),
        ] {
            if let Some(l) = listener {
                tasks.spawn(self.clone().accept_loop(l, kind, workers.clone()));
            }
        }
        if let Some(l) = listeners.admin {
            let live = self.clone();
            tasks.spawn(crate::admin::serve(
                l,
                edge.metrics.clone(),
                edge.draining.subscribe(),
                Arc::new(move || live.current().admin_token.clone()),
                edge.sessions.clone(),
            ));
        }
        tasks.spawn(self.clone().summarize_drops());
        tasks.spawn(crate::memory::trim_after_sessions_change(
            edge.sessions.clone(),
        ));
        while tasks.join_next().await.is_some() {}
    }

    /// Pre-auth drops are logged at debug one by one; this logs at most one info line per
    /// [`DROP_SUMMARY_INTERVAL`] with what was dropped, and forgets idle sources.
    async fn summarize_drops(self) {
        let mut last = std::collections::HashMap::new();
        let mut tick = tokio::time::interval(DROP_SUMMARY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let edge = self.current();
            let limits = edge.admission.limits();
            limits.sweep(std::time::Instant::now());
            let counts = reject::flood_counts(&edge.metrics);
            let mut parts = Vec::new();
            for (label, n) in &counts {
                let before = last.get(label).copied().unwrap_or(0);
                if *n > before {
                    parts.push(format!("{label}={}", n - before));
                }
            }
            last = counts.into_iter().collect();
            if !parts.is_empty() {
                info!(
                    dropped = %parts.join(" "),
                    unauthenticated = limits.unauthenticated(),
                    tracked_sources = limits.tracked_sources(),
                    interval_secs = DROP_SUMMARY_INTERVAL.as_secs(),
                    "pre-auth drops in the last interval (per-connection detail at debug)"
                );
            }
        }
    }

    async fn accept_loop(
        self,
        listener: TcpListener,
        kind: Listener,
        workers: Arc<crate::workers::Workers>,
    ) {
        let mut draining = self.current().draining.subscribe();
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = draining.wait_for(|d| *d) => {
                    info!(listener = kind.as_str(), "draining: listener closed");
                    return;
                }
            };
            let (stream, peer) = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    warn!(listener = kind.as_str(), error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let edge = self.current();
            edge.metrics
                .connections
                .with_label_values(&[kind.as_str()])
                .inc();
            let _ = stream.set_nodelay(true);
            // The socket leaves this runtime's reactor and joins its worker's, so its
            // readiness wakes the connection on its own thread.
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    warn!(listener = kind.as_str(), error = %e, "cannot hand a connection to a worker");
                    continue;
                }
            };
            workers.spawn(async move {
                match TcpStream::from_std(stream) {
                    Ok(stream) => edge.handle(stream, peer, kind).await,
                    Err(e) => {
                        warn!(listener = kind.as_str(), error = %e, "cannot register a connection on its worker");
                    }
                }
            });
        }
    }
}

/// A listening socket with the configured backlog (`listen.backlog`; the kernel caps it at
/// `net.core.somaxconn`).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// How often pre-auth drops are summed up in the log.
pub(crate) const DROP_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);
