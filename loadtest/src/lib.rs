//! `ssh-edge-loadtest`: drives many concurrent SSH logins (russh clients, certificate auth) at
//! an ssh-edge front or, as the baseline, straight at an sshd, and reports what ops needs:
//!
//! - `logins`: workers log in, run a command, log out, in a loop — logins per second and
//!   time-to-exit percentiles.
//! - `idle`: N sessions log in (16 at a time, and at most `--ramp-per-sec R` a second) and hold
//!   a running command; once all are up (or the ramp is done and the count held still), the
//!   watched processes' memory (`--watch-pid`, process tree PSS) is sampled while they are
//!   held, then they are held for the duration — connect percentiles and memory per session.
//! - `bulk`: N sessions push a pseudo-random stream into a remote check (`cksum`, see
//!   [`verify`]) for the duration — aggregate MiB/s, and `corrupt` if the far end disagrees.
//! - `stall`: a pre-authentication flood — N connections that connect and stall (`silent`:
//!   send nothing; `ident`: send an SSH identification line, then nothing), reconnecting when
//!   the server closes them, optionally from the source addresses 127.0.1.1..=K (`--sources`);
//!   counts what the server accepted, refused and cut (see [`stall`]). No login, no key.
//!
//! It is bounded (connections, duration) and, unless told otherwise, refuses targets that are
//! not loopback, so a stray run cannot load a production edge.

#![forbid(unsafe_code)]

pub mod client;
pub mod live;
pub mod memory;
pub mod modes;
pub mod ramp;
pub mod stall;
pub mod stats;
pub mod verify;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::Target;
use live::Live;
use modes::{IDLE_HANDSHAKES, IdleHold, Shared, Tally};
use ramp::Ramp;
use stall::{Stall, StallReport};
use stats::{ErrorDetail, Errors, Percentiles};
use verify::Verify;

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
    /// Start at most this many new sessions (logins) a second; None: as fast as they go.
    /// (Idle mode also keeps at most [`IDLE_HANDSHAKES`] logins in flight.)
    pub ramp_per_sec: Option<f64>,
    /// The only cipher the client offers (e.g. `aes128-gcm@openssh.com`); None: russh's list.
    pub cipher: Option<String>,
    /// How `bulk` checks its data at the far end.
    pub verify: Verify,
    /// Show a status line on stderr every second (the caller decides: a terminal, not quiet).
    pub progress: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MemoryReport {
    pub before_bytes: u64,
    /// Sampled while `held_sessions` were up.
    pub held_bytes: u64,
    pub held_sessions: u64,
    /// (held − before) / held sessions.
    pub per_session_bytes: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub mode: Mode,
    pub addr: String,
    pub connections: usize,
    pub elapsed_secs: f64,
    pub ramp_per_sec: Option<f64>,
    pub cipher: Option<String>,
    /// Completed logins (`logins`), established sessions (`idle`, `bulk`).
    pub ok: u64,
    /// Failures by kind: `{kind: count}`.
    pub errors: Errors,
    /// The same kinds with their reasons and one example message each.
    pub error_details: std::collections::BTreeMap<&'static str, ErrorDetail>,
    /// Sessions (logins) started in each second of the run: with a ramp R, each is ≤ R+1.
    pub starts_per_sec: Vec<u64>,
    pub per_sec: f64,
    pub latency: Option<Percentiles>,
    pub bytes_sent: u64,
    /// `bulk`: how the far end checked, and the bytes it confirmed.
    pub verify: Option<Verify>,
    pub bytes_verified: u64,
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
    #[error("--ramp-per-sec must be a rate in (0, {}]", ramp::MAX_RAMP_PER_SEC)]
    Ramp,
    #[error("unknown cipher {0:?}; known: {1}")]
    Cipher(String, String),
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
    if let Some(r) = opts.ramp_per_sec
        && !(r > 0.0 && r <= ramp::MAX_RAMP_PER_SEC)
    {
        return Err(OptionsError::Ramp);
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
    let mut config = russh::client::Config {
        nodelay: true,
        window_size: 8 << 20,
        ..Default::default()
    };
    if let Some(name) = &opts.cipher {
        let cipher = russh::cipher::Name::try_from(name.as_str()).map_err(|()| {
            let known: Vec<&str> = russh::cipher::ALL_CIPHERS
                .iter()
                .map(|c| c.as_ref())
                .filter(|c| *c != "none" && *c != "clear")
                .collect();
            OptionsError::Cipher(name.clone(), known.join(", "))
        })?;
        config.preferred.cipher = std::borrow::Cow::Owned(vec![cipher]);
    }
    Ok(Target {
        addr: opts.addr.clone(),
        user: opts.user.clone(),
        key: Arc::new(key),
        cert,
        config: Arc::new(config),
    })
}

/// Runs the load and returns the report; stops by itself after `duration` (idle mode: after
/// every session is in and then `duration`).
pub async fn run(opts: Options) -> Result<Report, OptionsError> {
    let addr = check(&opts)?;
    if opts.mode == Mode::Stall {
        return Ok(run_stall(&opts, addr).await);
    }
    let live = Arc::new(Live::default());
    let shared = Arc::new(Shared {
        target: target(&opts)?,
        command: opts.command.clone(),
        ramp: Ramp::new(opts.ramp_per_sec),
        live: live.clone(),
        deadline: tokio::time::Instant::now() + opts.duration,
    });
    let progress = opts
        .progress
        .then(|| live::progress(live.clone(), format!("{:?}", opts.mode).to_lowercase()));
    let started = Instant::now();
    let watched = || -> u64 {
        opts.watch_pids
            .iter()
            .map(|p| memory::tree_bytes(*p, &opts.exclude_pids))
            .sum()
    };
    let memory_before = watched();
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(IDLE_HANDSHAKES));

    let mut workers = Vec::new();
    for i in 0..opts.connections {
        let shared = shared.clone();
        let hold = IdleHold {
            release: release_rx.clone(),
            handshakes: handshakes.clone(),
        };
        let (mode, verify) = (opts.mode, opts.verify);
        workers.push(tokio::spawn(async move {
            match mode {
                Mode::Logins => modes::logins(&shared).await,
                Mode::Idle => modes::idle(&shared, hold).await,
                Mode::Bulk => modes::bulk(&shared, verify, i as u64).await,
                Mode::Stall => Tally::default(),
            }
        }));
    }

    let mut memory = None;
    if opts.mode == Mode::Idle {
        wait_until_in(&live, opts.connections as u64).await;
        // Let the servers settle (buffers, lazily allocated state) before sampling.
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !opts.watch_pids.is_empty() {
            let held = watched();
            let held_sessions = Live::get(&live.up);
            memory = Some(MemoryReport {
                before_bytes: memory_before,
                held_bytes: held,
                held_sessions,
                per_session_bytes: held.saturating_sub(memory_before) / held_sessions.max(1),
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
    if let Some(p) = progress {
        p.finish().await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Report {
        mode: opts.mode,
        addr: opts.addr.clone(),
        connections: opts.connections,
        elapsed_secs: elapsed,
        ramp_per_sec: opts.ramp_per_sec,
        cipher: opts.cipher.clone(),
        ok: tally.ok,
        error_details: tally.errors.details().clone(),
        errors: tally.errors,
        starts_per_sec: shared.ramp.per_second(),
        per_sec: tally.ok as f64 / elapsed.max(1e-9),
        latency: tally.latency.percentiles(),
        bytes_sent: tally.bytes,
        verify: (opts.mode == Mode::Bulk).then_some(opts.verify),
        bytes_verified: tally.verified,
        mib_per_sec: tally.bytes as f64 / (1 << 20) as f64 / elapsed.max(1e-9),
        memory,
        stall: None,
    })
}

/// How long the count of held sessions must stay still, once every session has started, to
/// call the ramp done although some logins have not reported yet.
pub const HELD_STILL: Duration = Duration::from_secs(3);

/// Idle mode: returns once every session is up or has failed, or every one has started and
/// the held count has not moved for [`HELD_STILL`]. Bounded: each session reports within
/// its login timeout of its start.
async fn wait_until_in(live: &Live, n: u64) {
    let mut last = (u64::MAX, Instant::now());
    loop {
        let up = Live::get(&live.up);
        if Live::get(&live.ok) + Live::get(&live.errors) >= n {
            return;
        }
        if up != last.0 {
            last = (up, Instant::now());
        } else if Live::get(&live.started) >= n && last.1.elapsed() >= HELD_STILL {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
        ramp_per_sec: None,
        cipher: None,
        ok: report.established,
        error_details: errors.details().clone(),
        errors,
        starts_per_sec: Vec::new(),
        per_sec: report.established as f64 / elapsed.max(1e-9),
        latency: None,
        bytes_sent: 0,
        verify: None,
        bytes_verified: 0,
        mib_per_sec: 0.0,
        memory: None,
        stall: Some(report),
    }
}
