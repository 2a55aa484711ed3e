//! The edge's lifecycle as one library call: bind, serve, reload, drain, stop.
//!
//! [`run`] (or [`Server::bind`] then [`Server::run`] to learn the bound ports first) serves
//! until `shutdown` completes, then drains: the listeners close, `/readyz` turns 503, and the
//! open sessions get `drain_timeout` to end before they are told to and ended. Reloads come
//! from a [`Reloader`] (the binary maps SIGHUP to it) and from watching the config files.
//! Signals stay in the binary, so tests drive the whole lifecycle in-process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{self, EdgeConfig, watch::RawReload};
use crate::edge::{Edge, Listeners, LiveEdge};
use crate::metrics::Metrics;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Bind(#[from] std::io::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Where a reload reads the configuration from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The TOML file (`None`: defaults and `SSH_EDGE_*` variables only).
    pub path: Option<PathBuf>,
    /// `[reload]`: whether and how often to watch the files for changes.
    pub watch: RawReload,
}

/// The addresses the server's listeners are bound to (port 0 in the config becomes a real one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub tls: Option<SocketAddr>,
    pub ssh: Option<SocketAddr>,
    pub admin: Option<SocketAddr>,
    pub token_plain: Option<SocketAddr>,
}

/// Asks a running server to reload its configuration (what SIGHUP does).
#[derive(Clone)]
pub struct Reloader(mpsc::Sender<()>);

impl Reloader {
    /// Queues a reload; several before the server gets to it make one.
    pub fn reload(&self) {
        let _ = self.0.try_send(());
    }
}

/// A bound, not yet serving, edge.
pub struct Server {
    live: LiveEdge,
    listeners: Listeners,
    source: ConfigSource,
    /// What a reload cannot change: the configured listen addresses.
    configured: [Option<SocketAddr>; 4],
    drain_timeout: Duration,
    reload_tx: mpsc::Sender<()>,
    reload_rx: mpsc::Receiver<()>,
}

/// Binds `config`'s listeners and serves until `shutdown` completes, then drains.
pub async fn run(
    config: EdgeConfig,
    source: ConfigSource,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::bind(config, source).await?.run(shutdown).await;
    Ok(())
}

impl Server {
    pub async fn bind(config: EdgeConfig, source: ConfigSource) -> Result<Self, ServerError> {
        let listeners = Listeners::bind(&config).await?;
        warn_insecure(&config);
        let configured = listen_addresses(&config);
        let drain_timeout = config.drain_timeout;
        let live = LiveEdge::new(Edge::new(config, Arc::new(Metrics::new()))?);
        let (reload_tx, reload_rx) = mpsc::channel(1);
        Ok(Self {
            live,
            listeners,
            source,
            configured,
            drain_timeout,
            reload_tx,
            reload_rx,
        })
    }

    pub fn addresses(&self) -> Addresses {
        let l = &self.listeners;
        Addresses {
            tls: l.tls_addr(),
            ssh: l.ssh_addr(),
            admin: l.admin_addr(),
            token_plain: l.token_plain_addr(),
        }
    }

    /// The generation in force, for tests and the demo (sessions, metrics).
    pub fn live(&self) -> LiveEdge {
        self.live.clone()
    }

    pub fn reloader(&self) -> Reloader {
        Reloader(self.reload_tx.clone())
    }

    /// Serves until `shutdown` completes, then drains; returns when every session has ended
    /// (or was ended at the drain timeout).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            live,
            listeners,
            source,
            configured,
            drain_timeout,
            reload_tx,
            mut reload_rx,
        } = self;
        tracing::info!(tls = ?listeners.tls_addr(), ssh = ?listeners.ssh_addr(), admin = ?listeners.admin_addr(), "ssh-edge listening");
        let serving = tokio::spawn(live.clone().serve(listeners));
        let watcher = source
            .path
            .clone()
            .filter(|_| source.watch.watch)
            .map(|file| {
                let every = Duration::from_secs(source.watch.watch_interval_secs.max(1));
                tokio::spawn(watch_files(file, every, reload_tx))
            });
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = reload_rx.recv() => reload(&live, source.path.as_deref(), &configured),
            }
        }
        if let Some(w) = watcher {
            w.abort();
        }
        drain(&live.current(), drain_timeout).await;
        serving.abort();
    }
}

/// Stops accepting, waits for the open sessions to end, then ends the rest with a message.
async fn drain(edge: &Edge, timeout: Duration) {
    tracing::info!(
        open_sessions = edge.sessions.count(),
        timeout_secs = timeout.as_secs(),
        "draining: listeners closed, waiting for sessions"
    );
    edge.start_drain();
    if edge.wait_drained(timeout).await {
        tracing::info!("drained, stopping");
        return;
    }
    // Tell the users still on: their clients print this and can reconnect elsewhere.
    let ended = edge.sessions.end_all(
        "drain",
        "session ended: this edge is shutting down; reconnect to reach another",
    );
    tracing::warn!(
        open_sessions = ended,
        "drain timeout, ending the sessions still open"
    );
    let _ = edge.wait_drained(Duration::from_secs(2)).await;
}

/// Raises the soft open-files limit to the hard one: every connection is a descriptor (two
/// with its backend), and the common default of 1024 would cap the edge long before its
/// pre-auth limits do.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(
            open_files = limit,
            "open-files limit raised to the hard limit"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

/// What a reload cannot change: the sockets are bound once.
fn listen_addresses(c: &EdgeConfig) -> [Option<SocketAddr>; 4] {
    [
        c.tls_listen,
        c.ssh_listen,
        c.admin_listen,
        c.token_plain_listen,
    ]
}

fn warn_insecure(config: &EdgeConfig) {
    if config.backend.host_keys.accept_any {
        tracing::warn!(
            "INSECURE: backend.accept_any_host_key = true; backend host keys are not verified"
        );
    }
}

/// Re-reads the config file and environment. A valid config becomes the generation for new
/// connections (open sessions keep theirs); an invalid one is logged with every problem and
/// the running config stays.
fn reload(live: &LiveEdge, path: Option<&Path>, configured: &[Option<SocketAddr>; 4]) {
    let edge = live.current();
    let outcome = match config::load(path) {
        Ok(config) => {
            if &listen_addresses(&config) != configured {
                tracing::warn!(
                    "reload: listen addresses cannot change without a restart; keeping the bound ones"
                );
            }
            warn_insecure(&config);
            let kill_revoked = config.kill_revoked_sessions;
            match edge.reconfigured(config) {
                Ok(next) => {
                    live.replace(next.clone());
                    tracing::info!("configuration reloaded; new connections use it");
                    if kill_revoked {
                        let ended = next.end_revoked_sessions();
                        if ended > 0 {
                            tracing::warn!(
                                sessions = ended,
                                "ended the open sessions of revoked certificates"
                            );
                        }
                    }
                    "ok"
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed: TLS configuration; keeping the running config");
                    "error"
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the running config");
            "error"
        }
    };
    edge.metrics
        .config_reloads
        .with_label_values(&[outcome])
        .inc();
}

/// Polls the config file and the files it names; sends on `changed` when they changed and
/// held still for one poll (see `config::watch`).
async fn watch_files(file: PathBuf, every: Duration, changed: mpsc::Sender<()>) {
    let files = |file: &Path| {
        let raw = config::load_raw(Some(file)).ok();
        config::watch::watched_files(file, raw.as_ref())
    };
    let first = {
        let file = file.clone();
        tokio::task::spawn_blocking(move || config::watch::fingerprint(&files(&file))).await
    };
    let Ok(first) = first else { return };
    let mut debounce = config::watch::Debounce::new(first);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let file = file.clone();
        let Ok(now) =
            tokio::task::spawn_blocking(move || config::watch::fingerprint(&files(&file))).await
        else {
            return;
        };
        if debounce.poll(now) {
            tracing::info!("configuration files changed; reloading");
            if changed.send(()).await.is_err() {
                return;
            }
        }
    }
}
