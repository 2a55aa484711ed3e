//! Front B: the token preamble the installed client helpers speak, then raw SSH passthrough.
//!
//! Wire protocol (after TLS): the client sends a 4-byte big-endian length N (1..=16 KiB) and
//! N bytes of a compact ES256 JWT. The edge answers one status byte — `0x00` accepted, `0x01`
//! rejected — and on acceptance splices the stream to the backend sshd, which verifies the
//! user's certificate itself. The status byte is flushed as a TLS record of its own before any
//! backend byte is relayed: the helper reads exactly one byte and then waits on its socket, so
//! bytes sharing that record would sit unseen in its TLS buffer. Reasons for a rejection are
//! logged and counted, never sent.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::auth::token::verify_token;
use crate::edge::Edge;
use crate::splice::splice;

/// Longest accepted token.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

pub const ACCEPTED: u8 = 0x00;
pub const REJECTED: u8 = 0x01;

/// Why a preamble was refused: a stable label for metrics plus the detail for the log.
#[derive(Debug)]
pub struct Refusal {
    pub reason: &'static str,
    pub detail: String,
}

fn refusal(reason: &'static str, detail: impl Into<String>) -> Refusal {
    Refusal {
        reason,
        detail: detail.into(),
    }
}

/// Reads the length prefix and the token, bounded in size and time.
pub async fn read_preamble<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Vec<u8>, Refusal> {
    let read = async {
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.map_err(|_| {
            refusal(
                "truncated_preamble",
                "stream ended inside the length prefix",
            )
        })?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            return Err(refusal("bad_length", "token length 0"));
        }
        if len > MAX_TOKEN_LEN {
            return Err(refusal(
                "bad_length",
                format!("token length {len} exceeds {MAX_TOKEN_LEN}"),
            ));
        }
        let mut token = vec![0u8; len];
        stream.read_exact(&mut token).await.map_err(|_| {
            refusal(
                "truncated_preamble",
                format!("stream ended inside a {len}-byte token"),
            )
        })?;
        Ok(token)
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(refusal(
            "preamble_timeout",
            format!("no complete preamble within {}s", timeout.as_secs()),
        )),
    }
}

impl Edge {
    /// Serves one front-B connection whose first byte was not `S`.
    pub(crate) async fn serve_token<S>(&self, mut stream: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let backend = match self.authorize_token(&mut stream, peer).await {
            Ok(b) => b,
            Err(r) => {
                self.metrics
                    .rejections
                    .with_label_values(&["token", r.reason])
                    .inc();
                warn!(peer = %peer, front = "token", reason = r.reason, detail = %r.detail, "token preamble rejected");
                let _ = stream.write_all(&[REJECTED]).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        let (backend, target) = backend;
        if stream.write_all(&[ACCEPTED]).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        self.metrics.logins.with_label_values(&["token"]).inc();
        self.metrics.sessions_active.inc();
        let up = self.metrics.splice_bytes.with_label_values(&["up"]);
        let down = self.metrics.splice_bytes.with_label_values(&["down"]);
        let result = splice(stream, backend, up, down).await;
        self.metrics.sessions_active.dec();
        match result {
            Ok(n) => {
                info!(peer = %peer, target = %target, up = n.up, down = n.down, "passthrough session closed");
            }
            Err(e) => {
                info!(peer = %peer, target = %target, error = %e, "passthrough session ended with error")
            }
        }
    }

    /// Preamble → verified claims → target → route → connected backend socket.
    async fn authorize_token<S>(
        &self,
        stream: &mut S,
        peer: SocketAddr,
    ) -> Result<(TcpStream, String), Refusal>
    where
        S: AsyncRead + Unpin,
    {
        let token = read_preamble(stream, self.preamble_timeout).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // The kid selects the remote: try each remote's key set (kids are unique across remotes).
        let mut verified = None;
        let mut last = refusal("unknown_kid", "no remote has token keys configured");
        for (remote, policy) in &self.tokens {
            match verify_token(policy, &token, now) {
                Ok(claims) => {
                    verified = Some((remote.clone(), claims));
                    break;
                }
                Err(e) if e.reason() == "unknown_kid" => {
                    last = refusal("unknown_kid", e.to_string())
                }
                Err(e) => return Err(refusal(e.reason(), e.to_string())),
            }
        }
        let (remote, claims) = verified.ok_or(last)?;
        let target = self
            .grammar
            .parse_host(&claims.host)
            .map_err(|e| refusal("bad_host", e.to_string()))?;
        if target.remote_name() != remote {
            return Err(refusal(
                "foreign_workload",
                format!(
                    "token signed for remote \"{remote}\" names {} of remote \"{}\"",
                    target.host,
                    target.remote_name()
                ),
            ));
        }
        let route = self
            .routes
            .resolve(&target)
            .map_err(|e| refusal(e.reason(), e.to_string()))?;
        info!(peer = %peer, front = "token", target = %target.host, sub = %claims.sub, jti = %claims.jti,
            backend = %route.backend_addr, "token accepted");
        let timeout = self.connector.connect_timeout();
        let backend = tokio::time::timeout(timeout, TcpStream::connect(&route.backend_addr))
            .await
            .map_err(|_| {
                refusal(
                    "backend_timeout",
                    format!("backend {} did not answer in time", route.backend_addr),
                )
            })?
            .map_err(|e| {
                refusal(
                    "backend_connect",
                    format!("cannot connect to backend {}: {e}", route.backend_addr),
                )
            })?;
        let _ = backend.set_nodelay(true);
        Ok((backend, target.host))
    }
}
