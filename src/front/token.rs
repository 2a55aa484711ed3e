//! Front B: the token preamble the installed client helpers speak, then raw SSH passthrough.
//!
//! Wire protocol (after TLS): the client sends a 4-byte big-endian length N (1..=16 KiB) and
//! N bytes of a compact ES256 JWT. The edge answers one status byte — `0x00` accepted, `0x01`
//! rejected — and on acceptance splices the stream to the backend sshd, which verifies the
//! user's certificate itself. The status byte is flushed as a TLS record of its own before any
//! backend byte is relayed: the helper reads exactly one byte and then waits on its socket, so
//! bytes sharing that record would sit unseen in its TLS buffer. Reasons for a rejection are
//! logged and counted, never sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::info;

use super::admit::{Admit, Client};
use crate::admission::Ticket;
use crate::bytes_count::ByteCounter;
use crate::reject::{Reason, Rejection};
use crate::splice::splice;

/// Longest accepted token.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

pub(crate) const ACCEPTED: u8 = 0x00;
pub(crate) const REJECTED: u8 = 0x01;

/// The token front's own refusal labels (the preamble's, and the admit step's checks of the
/// verified token), besides the verifier's and the replay cache's.
pub(crate) const FRONT_REASONS: [&str; 6] = [
    "bad_length",
    "truncated_preamble",
    "preamble_timeout",
    "unknown_kid",
    "bad_host",
    "foreign_workload",
];

/// Every `Reason::Token` label, so each series exists at 0 from the start.
pub(crate) fn token_reasons() -> impl Iterator<Item = &'static str> {
    use crate::auth::token::{ReplayError, TokenRejection};
    FRONT_REASONS
        .into_iter()
        .chain(TokenRejection::REASONS)
        .chain(ReplayError::REASONS)
}

/// Creates the token refusal series of the listeners front B serves, at 0: a dashboard or
/// alert on `replayed` sees a zero from the start, not nothing.
pub(crate) fn create_series(metrics: &crate::metrics::Metrics) {
    use crate::reject::Listener;
    for listener in [Listener::Tls, Listener::TokenPlain] {
        for reason in token_reasons() {
            metrics
                .rejections
                .with_label_values(&[listener.as_str(), reason]);
        }
    }
}

fn refusal(reason: &'static str, detail: impl Into<String>) -> Rejection {
    Rejection::new(Reason::Token(reason), detail)
}

/// Reads the length prefix and the token, bounded in size and time.
pub(crate) async fn read_preamble<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<Vec<u8>, Rejection> {
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

/// Front B's context: the shared admit step and the preamble's time limit.
pub struct TokenFront {
    pub admit: Arc<Admit>,
    pub preamble_timeout: Duration,
}

impl TokenFront {
    /// Serves one front-B connection (its first byte was not `S`, or it came on the plain
    /// token listener).
    pub(crate) async fn serve<S>(&self, mut stream: S, client: Client, ticket: Ticket)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let admitted = match Box::pin(read_preamble(&mut stream, self.preamble_timeout)).await {
            Ok(token) => Box::pin(self.admit.admit_token(&client, &token)).await,
            Err(r) => {
                // A cut by the login grace is recorded as such by the caller.
                if !ticket.expired() {
                    self.admit.reject(&client, &r);
                }
                Err(r)
            }
        };
        let admitted = match admitted {
            Ok(a) => a,
            Err(_) => {
                let _ = stream.write_all(&[REJECTED]).await;
                let _ = stream.flush().await;
                let _ = stream.shutdown().await;
                return;
            }
        };
        if stream.write_all(&[ACCEPTED]).await.is_err() || stream.flush().await.is_err() {
            return;
        }
        // From here the backend's sshd authenticates the user: the login grace is its job.
        ticket.authenticated();
        let metrics = &self.admit.metrics;
        metrics.logins.with_label_values(&["token"]).inc();
        let open = self.admit.sessions.open(crate::session::SessionInfo {
            front: "token".into(),
            client: client.addr.to_string(),
            sub: Some(admitted.claims.sub.clone()),
            jti: Some(admitted.claims.jti.clone()),
            target: admitted.target.host.clone(),
            remote: admitted.target.remote_name().to_string(),
            backend: admitted.backend_addr.clone(),
            ..Default::default()
        });
        let killed = open.killed();
        // Idle and maximum time apply; passthrough has no certificate the edge saw and no
        // place for a warning.
        let lifetimes = crate::route::lifetime::Lifetimes {
            at_cert_expiry: false,
            ..admitted.lifetimes
        };
        let deadline = crate::route::lifetime::deadline(&lifetimes, None, 0);
        let expiry = self
            .admit
            .workload_expiry(&admitted.target.host, admitted.gate);
        open.spawn_lifetimes(lifetimes, deadline, expiry, |_| {});
        let up = ByteCounter::new(metrics.splice_bytes.with_label_values(&["up"]))
            .for_session(open.stats().up.clone());
        let down = ByteCounter::new(metrics.splice_bytes.with_label_values(&["down"]))
            .for_session(open.stats().down.clone());
        // An administrator's kill closes both sockets (passthrough has no place for a message).
        let result = tokio::select! {
            r = splice(stream, admitted.backend, up, down) => r,
            Some(reason) = killed => {
                info!(client = %client.addr, target = %admitted.target.host, %reason, "passthrough session ended by an administrator");
                Ok(crate::splice::Spliced::default())
            }
        };
        drop(open);
        let target = &admitted.target.host;
        match result {
            Ok(n) => {
                info!(client = %client.addr, target = %target, up = n.up, down = n.down, "passthrough session closed");
            }
            Err(e) => {
                info!(client = %client.addr, target = %target, error = %e, "passthrough session ended with error")
            }
        }
    }
}
