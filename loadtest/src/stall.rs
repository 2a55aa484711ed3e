//! The `stall` mode: a pre-authentication flood. Each of N workers opens a TCP connection to
//! the target and then stalls — `silent` sends nothing, `ident` sends an SSH identification line
//! and nothing after it — reading (and discarding) whatever the server sends until the server
//! closes the connection or the run ends. A worker whose connection the server closed opens
//! another after about a second (0.5–1.5 s, spread so the workers do not reconnect in waves),
//! until the deadline. Connections can be spread over the source addresses 127.0.1.1..=K so
//! per-source limits see K clients instead of one.
//!
//! Bounded like the other modes: N ≤ [`crate::MAX_CONNECTIONS`] connections open at once, each
//! worker at most one connect per ~0.5 s, everything ends at the deadline.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// What a stalled connection sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stall {
    /// Connect and send nothing.
    Silent,
    /// Connect, send [`IDENT`], then nothing (stalls before key exchange).
    Ident,
}

/// The identification line an `ident` stall sends.
pub const IDENT: &[u8] = b"SSH-2.0-flood\r\n";

/// At most this many source addresses (127.0.1.1 ..= 127.0.1.254).
pub const MAX_SOURCES: usize = 254;

/// How long one TCP connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the ssh-edge prefixes to the line it writes when it refuses a connection at admission.
const NOTICE: &[u8] = b"ssh-edge:";

/// Source address `i` of `k` (0-based): 127.0.1.1 ..= 127.0.1.k.
pub fn source_addr(i: usize, k: usize) -> Option<IpAddr> {
    (k > 0).then(|| IpAddr::V4(Ipv4Addr::new(127, 0, 1, (i % k + 1) as u8)))
}

/// What the flood saw, summed over the workers.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct StallReport {
    pub stall: Option<Stall>,
    /// Source addresses used (0: the system's choice, 127.0.0.1 for a loopback target).
    pub sources: usize,
    /// Connects tried (finished ones; a connect cut by the deadline is not counted).
    pub attempts: u64,
    /// Connects that succeeded.
    pub established: u64,
    /// Connects that failed or timed out (also in the report's `errors.connect`).
    pub connect_failed: u64,
    /// Established connections the server closed (EOF or reset) before the deadline.
    pub closed_by_edge: u64,
    /// Of those, the ones whose first bytes were the edge's refusal notice (`ssh-edge: …`):
    /// refused at admission rather than cut later.
    pub refused_with_notice: u64,
    /// Connections still open when the run ended (closed by the generator).
    pub still_open_at_end: u64,
    /// Most connections open at once.
    pub peak_open: u64,
}

/// Open connections now and at most, shared by the workers.
#[derive(Default)]
struct Open {
    now: AtomicU64,
    peak: AtomicU64,
}

impl Open {
    fn up(&self) {
        let n = self.now.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(n, Ordering::Relaxed);
    }

    fn down(&self) {
        self.now.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the flood against `addr` until `deadline`.
pub async fn flood(
    addr: SocketAddr,
    stall: Stall,
    connections: usize,
    sources: usize,
    deadline: Instant,
) -> StallReport {
    let open = Arc::new(Open::default());
    let mut workers = Vec::with_capacity(connections);
    for i in 0..connections {
        let open = open.clone();
        let source = source_addr(i, sources);
        workers.push(tokio::spawn(worker(
            addr, source, stall, i as u64, deadline, open,
        )));
    }
    let mut report = StallReport {
        stall: Some(stall),
        sources,
        ..Default::default()
    };
    for w in workers {
        if let Ok(t) = w.await {
            report.attempts += t.attempts;
            report.established += t.established;
            report.connect_failed += t.connect_failed;
            report.closed_by_edge += t.closed_by_edge;
            report.refused_with_notice += t.refused_with_notice;
            report.still_open_at_end += t.still_open_at_end;
        }
    }
    report.peak_open = open.peak.load(Ordering::Relaxed);
    report
}

async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(addr).await;
    };
    let socket = match ip {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// How one held connection ended.
enum Ended {
    /// The server closed it; `notice`: its first bytes were the edge's refusal line.
    ByServer {
        notice: bool,
    },
    Deadline,
}

/// Sends the stall's bytes, then reads and discards until the server closes or the deadline.
async fn hold(mut stream: TcpStream, stall: Stall, deadline: Instant) -> Ended {
    if stall == Stall::Ident {
        let write = stream.write_all(IDENT);
        match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Ended::ByServer { notice: false },
            Err(_) => return Ended::Deadline,
        }
    }
    let mut first = Vec::with_capacity(NOTICE.len());
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return Ended::Deadline,
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Ended::ByServer {
                    notice: first.starts_with(NOTICE),
                };
            }
            Ok(Ok(n)) => {
                let room = NOTICE.len().saturating_sub(first.len());
                first.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

async fn worker(
    addr: SocketAddr,
    source: Option<IpAddr>,
    stall: Stall,
    seed: u64,
    deadline: Instant,
    open: Arc<Open>,
) -> StallReport {
    let mut t = StallReport::default();
    // xorshift: a per-worker spread of the reconnect delay, no dependency needed.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while Instant::now() < deadline {
        let until = deadline.min(Instant::now() + CONNECT_TIMEOUT);
        match tokio::time::timeout_at(until, connect(addr, source)).await {
            Err(_) if Instant::now() >= deadline => break,
            Err(_) | Ok(Err(_)) => {
                t.attempts += 1;
                t.connect_failed += 1;
            }
            Ok(Ok(stream)) => {
                t.attempts += 1;
                t.established += 1;
                open.up();
                let ended = hold(stream, stall, deadline).await;
                open.down();
                match ended {
                    Ended::Deadline => {
                        t.still_open_at_end += 1;
                        break;
                    }
                    Ended::ByServer { notice } => {
                        t.closed_by_edge += 1;
                        t.refused_with_notice += u64::from(notice);
                    }
                }
            }
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let delay = Duration::from_millis(500 + x % 1000);
        tokio::time::sleep_until(deadline.min(Instant::now() + delay)).await;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_cycle_over_127_0_1_x() {
        assert_eq!(source_addr(0, 0), None);
        assert_eq!(source_addr(0, 3), Some("127.0.1.1".parse().unwrap()));
        assert_eq!(source_addr(2, 3), Some("127.0.1.3".parse().unwrap()));
        assert_eq!(source_addr(3, 3), Some("127.0.1.1".parse().unwrap()));
        assert_eq!(source_addr(253, 254), Some("127.0.1.254".parse().unwrap()));
    }

    /// A local server that refuses with the edge's notice, one that closes later, and one that
    /// never closes: the tallies tell them apart.
    #[tokio::test]
    async fn the_flood_tells_refusals_cuts_and_held_connections_apart() {
        async fn server(behaviour: u8) -> SocketAddr {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(async move {
                let mut held = Vec::new();
                while let Ok((mut s, _)) = listener.accept().await {
                    match behaviour {
                        0 => {
                            let _ = s.write_all(b"ssh-edge: too many\r\n").await;
                        }
                        1 => {
                            let mut line = [0u8; IDENT.len()];
                            let _ = s.read_exact(&mut line).await;
                            assert_eq!(&line, IDENT);
                            let _ = s.write_all(b"SSH-2.0-x\r\n").await;
                        }
                        _ => held.push(s),
                    }
                }
            });
            addr
        }
        let deadline = || Instant::now() + Duration::from_millis(1200);
        let refused = flood(server(0).await, Stall::Silent, 3, 0, deadline()).await;
        assert_eq!(refused.established, refused.closed_by_edge, "{refused:?}");
        assert_eq!(refused.refused_with_notice, refused.closed_by_edge);
        assert!(refused.closed_by_edge >= 3, "{refused:?}");
        assert_eq!(refused.still_open_at_end, 0);

        let cut = flood(server(1).await, Stall::Ident, 3, 2, deadline()).await;
        assert!(cut.closed_by_edge >= 3, "{cut:?}");
        assert_eq!(cut.refused_with_notice, 0, "{cut:?}");

        let held = flood(server(2).await, Stall::Silent, 4, 2, deadline()).await;
        assert_eq!(
            (held.attempts, held.still_open_at_end, held.closed_by_edge),
            (4, 4, 0),
            "{held:?}"
        );
        assert_eq!(held.peak_open, 4);
    }
}
