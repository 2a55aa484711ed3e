//! The admission pipeline every accepted connection passes before any front sees it:
//! global pre-auth cap → PROXY header (trusted CIDRs only) → per-source rate and cap → the
//! login-grace deadline on the socket. The result is a stream for the fronts, the client's real
//! address and a [`Ticket`] that holds the pre-auth slots until the front says the client
//! authenticated.
//!
//! - [`limits`]: the pure counting rules (random early drop, per-source caps, token buckets).
//! - [`proxy`]: the pure PROXY v1/v2 parser and its socket reader.
//! - [`stream`]: the deadline beneath TLS and russh, and the replay of bytes read ahead.

pub mod limits;
pub mod proxy;
pub(crate) mod stream;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::reject::{Listener, Reason, Rejection};
use limits::{GlobalPermit, LimitSettings, PreauthLimits, SourcePermit};
use proxy::ProxyMode;
use stream::{GraceStream, Prefixed};

/// One connection's admission state, shared by the deadline stream and the front.
#[derive(Clone, Default)]
pub(crate) struct Ticket(Arc<TicketState>);

/// Counts and logs a login-grace cut (set by the front that knows the client).
type ExpiryRecorder = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct TicketState {
    authenticated: AtomicBool,
    expired: AtomicBool,
    permits: Mutex<(Option<GlobalPermit>, Option<SourcePermit>)>,
    on_expiry: Mutex<Option<ExpiryRecorder>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ticket {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn hold(&self, global: Option<GlobalPermit>, source: Option<SourcePermit>) {
        *locked(&self.0.permits) = (global, source);
    }

    /// The client authenticated: the deadline stops applying and the pre-auth slots free up.
    pub(crate) fn authenticated(&self) {
        self.0.authenticated.store(true, Ordering::Release);
        let released = std::mem::take(&mut *locked(&self.0.permits));
        drop(released);
        drop(locked(&self.0.on_expiry).take());
    }

    /// What records a login-grace cut of this connection. It runs when the deadline fires,
    /// before the stream reports the cut, so the count is there before the client sees the
    /// close.
    pub(crate) fn on_expiry(&self, record: impl FnOnce() + Send + 'static) {
        if !self.is_authenticated() {
            *locked(&self.0.on_expiry) = Some(Box::new(record));
        }
    }

    pub(crate) fn is_authenticated(&self) -> bool {
        self.0.authenticated.load(Ordering::Acquire)
    }

    pub(crate) fn mark_expired(&self) {
        if !self.0.expired.swap(true, Ordering::AcqRel) {
            let record = locked(&self.0.on_expiry).take();
            if let Some(record) = record {
                record();
            }
        }
    }

    /// The login-grace deadline cut this connection.
    pub(crate) fn expired(&self) -> bool {
        self.0.expired.load(Ordering::Acquire)
    }
}

/// The validated admission settings (`listen.proxy_*`, `[limits]`, `ssh.login_grace_secs`).
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionSettings {
    pub proxy_mode: ProxyMode,
    /// Peers whose PROXY header is believed; with PROXY protocol on, nobody else may connect.
    pub proxy_trusted: Vec<IpNet>,
    pub limits: LimitSettings,
    /// From TCP accept until authentication, every phase included.
    pub login_grace: Duration,
}

/// What admission hands to the fronts.
pub(crate) type AdmittedStream = Prefixed<GraceStream<TcpStream>>;

/// An admitted connection: the stream, the client's address and its ticket.
pub(crate) struct Entry {
    pub stream: AdmittedStream,
    pub client: SocketAddr,
    pub ticket: Ticket,
    /// The PROXY header's version ("v1", "v2"), or "local" when it named no client.
    pub proxy: Option<&'static str>,
}

/// A connection admission turned away. The socket is still open so that the caller counts the
/// rejection before the client sees the close (an operator or a test reading the count right
/// after the refusal finds it), then drops it.
pub(crate) struct Refused {
    pub rejection: Rejection,
    /// The client's address (from the PROXY header once it was read).
    pub client: SocketAddr,
    pub connection: TcpStream,
}

/// The pipeline's settings and live counts; one per edge, kept across reloads unless the
/// limits change.
pub struct Admission {
    settings: AdmissionSettings,
    limits: Arc<PreauthLimits>,
}

impl Admission {
    /// `unauthenticated` is the gauge that follows the unauthenticated connections.
    pub(crate) fn new(settings: AdmissionSettings, unauthenticated: prometheus::IntGauge) -> Self {
        let limits = PreauthLimits::new(settings.limits, unauthenticated);
        Self { settings, limits }
    }

    /// The next generation's admission: keeps the live counts when the limits are unchanged.
    pub(crate) fn reconfigured(&self, settings: AdmissionSettings) -> Self {
        let limits = if settings.limits == self.settings.limits {
            self.limits.clone()
        } else {
            PreauthLimits::new(settings.limits, self.limits.gauge())
        };
        Self { settings, limits }
    }

    pub(crate) fn limits(&self) -> &Arc<PreauthLimits> {
        &self.limits
    }

    fn trusted(&self, peer: SocketAddr) -> bool {
        self.settings
            .proxy_trusted
            .iter()
            .any(|net| net.contains(&peer.ip()))
    }

    /// Runs one accepted connection through the pipeline. A refused connection is handed back
    /// for the caller to record, then close (front C first hears one line saying why, as
    /// OpenSSH's MaxStartups does).
    pub(crate) async fn admit(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        listener: Listener,
    ) -> Result<Entry, Refused> {
        let deadline = Instant::now() + self.settings.login_grace;
        let ticket = Ticket::new();
        // The hard global cap first: under a flood the cheapest drop is before reading anything.
        let global = match self.limits.admit_global() {
            Ok(global) => global,
            Err(r) => {
                refuse(&stream, listener, r);
                return Err(Refused {
                    rejection: Rejection::new(r, "too many unauthenticated connections"),
                    client: peer,
                    connection: stream,
                });
            }
        };
        let mut stream = GraceStream::new(stream, ticket.clone(), deadline);
        let (client, rest, proxy) = if self.settings.proxy_mode == ProxyMode::Off {
            (peer, Vec::new(), None)
        } else if !self.trusted(peer) {
            return Err(Refused {
                rejection: Rejection::new(
                    Reason::ProxyUntrusted,
                    format!("{peer} is not in listen.proxy_trusted_cidrs"),
                ),
                client: peer,
                connection: stream.into_inner(),
            });
        } else {
            let timeout = deadline.saturating_duration_since(Instant::now());
            match proxy::read_header(&mut stream, self.settings.proxy_mode, timeout).await {
                Ok(h) => match h.source {
                    Some(source) => (source, h.rest, Some(h.version)),
                    None => (peer, h.rest, Some("local")),
                },
                Err(e) => {
                    let reason = if e.is_missing() {
                        Reason::ProxyMissing
                    } else {
                        Reason::ProxyMalformed
                    };
                    return Err(Refused {
                        rejection: Rejection::new(reason, format!("from {peer}: {e}")),
                        client: peer,
                        connection: stream.into_inner(),
                    });
                }
            }
        };
        let source = match self
            .limits
            .admit_source(client.ip(), std::time::Instant::now())
        {
            Ok(source) => source,
            Err(r) => {
                let detail = match r {
                    Reason::Rate => "source opens connections too fast",
                    _ => "too many unauthenticated connections from this source",
                };
                refuse(stream.get_ref(), listener, r);
                return Err(Refused {
                    rejection: Rejection::new(r, detail),
                    client,
                    connection: stream.into_inner(),
                });
            }
        };
        // Random early drop, now that the source is known (see `limits`).
        if global.early_drop(source.pending_before(), rand::random::<f64>()) {
            refuse(stream.get_ref(), listener, Reason::PreauthFull);
            return Err(Refused {
                rejection: Rejection::new(
                    Reason::PreauthFull,
                    "random early drop: many unauthenticated connections, and this source has more pending",
                ),
                client,
                connection: stream.into_inner(),
            });
        }
        ticket.hold(Some(global), Some(source));
        Ok(Entry {
            stream: Prefixed::new(rest, stream),
            client,
            ticket,
            proxy,
        })
    }
}

/// A best-effort line for plain-SSH clients (OpenSSH shows it); TLS listeners just close.
fn refuse(stream: &TcpStream, listener: Listener, reason: Reason) {
    if listener != Listener::Ssh {
        return;
    }
    let why = match reason {
        Reason::Rate => "too many connections from your address, slow down",
        Reason::PerSource => "too many unauthenticated connections from your address",
        _ => "too many unauthenticated connections, try again later",
    };
    // Straight to the socket (non-blocking), not `try_write`: a connection just moved to its
    // worker (`crate::workers`) has no readiness recorded yet, and tokio would refuse to try.
    let _ = rustix::io::write(stream, format!("ssh-edge: {why}\r\n").as_bytes());
    // Unread input turns the close into a reset, which can destroy the line before the
    // client reads it: drain what has arrived.
    let mut sink = [0u8; 1024];
    while matches!(rustix::io::read(stream, &mut sink), Ok(n) if n > 0) {}
}
