//! `ssh-edge-loadtest`: drives many concurrent SSH logins (russh clients, certificate auth) at
//! an ssh-edge front or, as the baseline, straight at an sshd, and reports what ops needs:
//!
//! - `logins`: workers log in, run a command, log out, in a loop — logins per second and
//!   time-to-exit percentiles.
//! - `idle`: N sessions log in (16 at a time) and hold a running command for the duration
//!   once all are up — connect percentiles and the memory each held session costs the watched
//!   processes (`--watch-pid`, process tree PSS).
//! - `bulk`: N sessions push data into `cat > /dev/null` — aggregate MiB/s.
//! - `stall`: a pre-authentication flood — N connections that connect and stall (`silent`:
//!   send nothing; `ident`: send an SSH identification line, then nothing), reconnecting when
//!   the server closes them, optionally from the source addresses 127.0.1.1..=K (`--sources`);
//!   counts what the server accepted, refused and cut (see [`stall`]). No login, no key.
//!
//! It is bounded (connections, duration) and, unless told otherwise, refuses targets that are
//! not loopback, so a stray run cannot load a production edge.

#![forbid(unsafe_code)]

pub mod client;
pub mod memory;
pub mod stall;
pub mod stats;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{LoadError, Target};
use stall::{Stall, StallReport};
use stats::{Errors, Latencies, Percentiles};

/// At most this many concurrent connections / seconds per run.
pub const MAX_CONNECTIONS: usize = 5000;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Logins,
    Idle,
    Bulk,
    Stall,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub addr: String,
    /// Unused by `stall`.
    pub user: String,
    /// Private key; its certificate is `<key>-cert.pub`. Unused by `stall`.
    pub key: PathBuf,
    pub mode: Mode,
    pub connections: usize,
    pub duration: Duration,
    /// Command each session runs (defaults per mode).
    pub command: Option<String>,
    /// Processes (with their children) whose memory the idle mode reports.
    pub watch_pids: Vec<u32>,
    /// Processes (with their children) left out of that.
    pub exclude_pids: Vec<u32>,
    pub allow_remote: bool,
    /// What `stall` connections send.
    pub stall: Stall,
    /// `stall`: spread the connections over 127.0.1.1..=sources (0: don't bind).
    pub sources: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryReport {
    pub before_bytes: u64,
    pub held_bytes: u64,
    pub per_session_bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub addr: String,
    pub connections: usize,
    pub elapsed_secs: f64,
    /// Completed logins (`logins`), established sessions (`idle`, `bulk`).
    pub ok: u64,
    pub errors: Errors,
    pub per_sec: f64,
    pub latency: Option<Percentiles>,
    pub bytes_sent: u64,
    pub mib_per_sec: f64,
    pub memory: Option<MemoryReport>,
    /// `stall` mode's counts.
    pub stall: Option<StallReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("{0} is not a loopback address; pass --allow-remote to load a non-local server")]
    NotLoopback(String),
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("connections must be 1..={MAX_CONNECTIONS}, got {0}")]
    Connections(usize),
    #[error("duration must be 1 s..=1 h")]
    Duration,
    #[error("cannot read {path}: {reason}")]
    Key { path: String, reason: String },
    #[error(
        "--sources must be 0..={}, with --mode stall and an IPv4 target",
        stall::MAX_SOURCES
    )]
    Sources,
}

/// Checks the options; returns the target address (the first one `addr` resolves to).
fn check(opts: &Options) -> Result<SocketAddr, OptionsError> {
    if opts.connections == 0 || opts.connections > MAX_CONNECTIONS {
        return Err(OptionsError::Connections(opts.connections));
    }
    if opts.duration < Duration::from_secs(1) || opts.duration > MAX_DURATION {
        return Err(OptionsError::Duration);
    }
    let addrs: Vec<_> = opts
        .addr
        .to_socket_addrs()
        .map_err(|_| OptionsError::Resolve(opts.addr.clone()))?
        .collect();
    if addrs.is_empty() {
        return Err(OptionsError::Resolve(opts.addr.clone()));
    }
    if !opts.allow_remote && !addrs.iter().all(|a| a.ip().is_loopback()) {
        return Err(OptionsError::NotLoopback(opts.addr.clone()));
    }
    if opts.sources > 0
        && (opts.sources > stall::MAX_SOURCES || opts.mode != Mode::Stall || !addrs[0].is_ipv4())
    {
        return Err(OptionsError::Sources);
    }
    Ok(addrs[0])
}

fn target(opts: &Options) -> Result<Target, OptionsError> {
    let key_err = |path: &PathBuf, e: &dyn std::fmt::Display| OptionsError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let key = russh::keys::load_secret_key(&opts.key, None).map_err(|e| key_err(&opts.key, &e))?;
    let cert_path = PathBuf::from(format!("{}-cert.pub", opts.key.display()));
    let cert =
        russh::keys::load_openssh_certificate(&cert_path).map_err(|e| key_err(&cert_path, &e))?;
    let config = russh::client::Config {
        nodelay: true,
        window_size: 8 << 20,
        ..Default::default()
    };
    Ok(Target {
        addr: opts.addr.clone(),
        user: opts.user.clone(),
        key: Arc::new(key),
        cert,
        config: Arc::new(config),
    })
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    errors: Errors,
    latency: Latencies,
    bytes: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors.merge(other.errors);
        self.latency.extend(other.latency);
        self.bytes += other.bytes;
    }

    fn fail(&mut self, e: LoadError) {
        self.errors.count(e.kind());
    }
}

/// Runs the load and returns the report; stops by itself after `duration`.
pub async fn run(opts: Options) -> Result<Report, OptionsError> {
    let addr = check(&opts)?;
    if opts.mode == Mode::Stall {
        return Ok(run_stall(&opts, addr).await);
    }
    let target = Arc::new(target(&opts)?);
    let deadline = tokio::time::Instant::now() + opts.duration;
    let started = Instant::now();
    let watched = || -> u64 {
        opts.watch_pids
            .iter()
            .map(|p| memory::tree_bytes(*p, &opts.exclude_pids))
            .sum()
    };
    let memory_before = watched();
    // Idle mode: sessions report once established (true) or failed (false), then hold until
    // released; at most IDLE_HANDSHAKES log in at once, as users trickle in rather than all
    // in the same millisecond (burst capacity is what `logins` measures).
    let (held_tx, mut held_rx) = tokio::sync::mpsc::channel::<bool>(opts.connections);
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(IDLE_HANDSHAKES));

    let mut workers = Vec::new();
    for _ in 0..opts.connections {
        let target = target.clone();
        let command = opts.command.clone();
        let idle_hold = IdleHold {
            held: held_tx.clone(),
            release: release_rx.clone(),
            handshakes: handshakes.clone(),
        };
        workers.push(tokio::spawn(async move {
            match opts.mode {
                Mode::Logins => logins(&target, command.as_deref(), deadline).await,
                Mode::Idle => idle(&target, command.as_deref(), idle_hold).await,
                Mode::Bulk => bulk(&target, command.as_deref(), deadline).await,
                Mode::Stall => Tally::default(),
            }
        }));
    }
    drop(held_tx);

    // Idle mode: once every session is up (or has failed), sample memory, hold for the
    // duration, release.
    let mut memory = None;
    if opts.mode == Mode::Idle {
        let (mut up, mut reported) = (0u64, 0);
        while reported < opts.connections
            && let Some(established) = held_rx.recv().await
        {
            reported += 1;
            up += u64::from(established);
        }
        if !opts.watch_pids.is_empty() {
            // Let the servers settle (buffers, lazily allocated state) before sampling.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let held = watched();
            memory = Some(MemoryReport {
                before_bytes: memory_before,
                held_bytes: held,
                per_session_bytes: held.saturating_sub(memory_before) / up.max(1),
            });
        }
        tokio::time::sleep(opts.duration).await;
        let _ = release_tx.send(true);
    }

    let mut tally = Tally::default();
    for w in workers {
        if let Ok(t) = w.await {
            tally.merge(t);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Report {
        mode: opts.mode,
        addr: opts.addr.clone(),
        connections: opts.connections,
        elapsed_secs: elapsed,
        ok: tally.ok,
        errors: tally.errors,
        per_sec: tally.ok as f64 / elapsed.max(1e-9),
        latency: tally.latency.percentiles(),
        bytes_sent: tally.bytes,
        mib_per_sec: tally.bytes as f64 / (1 << 20) as f64 / elapsed.max(1e-9),
        memory,
        stall: None,
    })
}

/// The pre-authentication flood: `ok` is the connections established, `errors.connect` the
/// connects that failed.
async fn run_stall(opts: &Options, addr: SocketAddr) -> Report {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + opts.duration;
    let report = stall::flood(addr, opts.stall, opts.connections, opts.sources, deadline).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut errors = Errors::default();
    errors.add("connect", report.connect_failed);
    Report {
        mode: Mode::Stall,
        addr: opts.addr.clone(),
        connections: opts.connections,
        elapsed_secs: elapsed,
        ok: report.established,
        errors,
        per_sec: report.established as f64 / elapsed.max(1e-9),
        latency: None,
        bytes_sent: 0,
        mib_per_sec: 0.0,
        memory: None,
        stall: Some(report),
    }
}

/// Log in, run the command (default `true`), log out; again until the deadline.
async fn logins(t: &Target, command: Option<&str>, deadline: tokio::time::Instant) -> Tally {
    let mut tally = Tally::default();
    while tokio::time::Instant::now() < deadline {
        let t0 = Instant::now();
        let result = async {
            let handle = client::login(t).await?;
            let channel = client::start(&handle, command.unwrap_or("true")).await?;
            let done = client::finish(channel).await;
            client::disconnect(handle).await;
            done
        }
        .await;
        match result {
            Ok(()) => {
                tally.ok += 1;
                tally.latency.record(t0.elapsed());
            }
            Err(e) => tally.fail(e),
        }
    }
    tally
}

/// At most this many idle-mode logins in flight at once.
pub const IDLE_HANDSHAKES: usize = 16;

/// An idle session's links to the orchestrator.
struct IdleHold {
    held: tokio::sync::mpsc::Sender<bool>,
    release: tokio::sync::watch::Receiver<bool>,
    handshakes: Arc<tokio::sync::Semaphore>,
}

/// Log in, start the command (default: a long sleep), report, and hold the session until
/// released.
async fn idle(t: &Target, command: Option<&str>, mut hold: IdleHold) -> Tally {
    let mut tally = Tally::default();
    let session = async {
        let _permit = hold.handshakes.acquire().await;
        let t0 = Instant::now();
        let attempt = async {
            let handle = client::login(t).await?;
            let channel = client::start(&handle, command.unwrap_or("sleep 7200")).await?;
            Ok::<_, LoadError>((handle, channel))
        };
        let result = tokio::time::timeout(client::LOGIN_TIMEOUT, attempt)
            .await
            .unwrap_or(Err(LoadError::Timeout));
        result.map(|s| (s, t0.elapsed()))
    }
    .await;
    match session {
        Ok(((handle, channel), took)) => {
            tally.ok += 1;
            tally.latency.record(took);
            let _ = hold.held.send(true).await;
            let _ = hold.release.wait_for(|r| *r).await;
            drop(channel);
            client::disconnect(handle).await;
        }
        Err(e) => {
            let _ = hold.held.send(false).await;
            tally.fail(e);
        }
    }
    tally
}

/// Log in and push data into the command (default `cat > /dev/null`) until the deadline.
async fn bulk(t: &Target, command: Option<&str>, deadline: tokio::time::Instant) -> Tally {
    let mut tally = Tally::default();
    let t0 = Instant::now();
    let session = async {
        let handle = client::login(t).await?;
        let channel = client::start(&handle, command.unwrap_or("cat > /dev/null")).await?;
        Ok::<_, LoadError>((handle, channel))
    }
    .await;
    let (handle, channel) = match session {
        Ok(s) => s,
        Err(e) => {
            tally.fail(e);
            return tally;
        }
    };
    tally.ok += 1;
    tally.latency.record(t0.elapsed());
    let chunk = bytes_chunk();
    while tokio::time::Instant::now() < deadline {
        let send = channel.data_bytes(chunk.clone());
        match tokio::time::timeout_at(deadline, send).await {
            Ok(Ok(())) => tally.bytes += chunk.len() as u64,
            Ok(Err(e)) => {
                tally.fail(LoadError::Channel(e.to_string()));
                break;
            }
            Err(_) => break,
        }
    }
    let _ = channel.eof().await;
    if let Err(e) = tokio::time::timeout(Duration::from_secs(30), client::finish(channel))
        .await
        .unwrap_or(Err(LoadError::Timeout))
    {
        tally.fail(e);
    }
    client::disconnect(handle).await;
    tally
}

fn bytes_chunk() -> bytes::Bytes {
    bytes::Bytes::from(vec![0x5a; 32 * 1024])
}
