//! The public doors: TLS with SNI (front A), TLS with a token preamble (front B) and plain
//! SSH (front C), and the one place a connection is handed to them.
//!
//! - [`admit`]: the shared step from target and client to route, policy and backend.
//! - [`tls`]: the TLS handshake and the first byte that tells front A from front B.
//! - [`ssh`]: the russh handler of the terminating fronts (A and C).
//! - [`token`]: front B's preamble and passthrough.

pub(crate) mod admit;
pub(crate) mod ssh;
pub(crate) mod tls;
pub(crate) mod token;

use std::sync::Arc;

use crate::admission::Entry;
use crate::reject::{Listener, Reason, Rejection};
use admit::Client;
use ssh::SshFront;
use tls::{FirstByte, TlsFront};
use token::TokenFront;

/// Which public door a session came through. Labels `ssh_edge_logins_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Front {
    /// A: TLS with SNI naming the workload, SSH terminated.
    Tls,
    /// C: plain SSH with the workload in the user name, terminated.
    Ssh,
}

impl Front {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Front::Tls => "tls",
            Front::Ssh => "ssh",
        }
    }
}

/// The fronts of one configuration generation.
pub struct Fronts {
    pub ssh: SshFront,
    pub token: TokenFront,
    /// `None` without `listen.tls`.
    pub tls: Option<TlsFront>,
}

impl Fronts {
    /// Serves one admitted connection by the listener it came in on; a login-grace cut is
    /// recorded when the deadline fires.
    pub(crate) async fn serve(self: Arc<Self>, entry: Entry, listener: Listener) {
        let client = Client {
            addr: entry.client,
            listener,
        };
        let admit = self.ssh.admit.clone();
        entry.ticket.on_expiry(move || {
            admit.reject(
                &client,
                &Rejection::new(
                    Reason::Grace,
                    "not authenticated within the login grace time",
                ),
            );
        });
        // Each front boxed: the connection's task then holds only the front it runs, not the
        // largest of the three (it lives, mostly idle, as long as the session).
        match listener {
            Listener::Ssh => {
                self.ssh
                    .serve(entry.stream, client, Front::Ssh, None, entry.ticket)
                    .await
            }
            Listener::TokenPlain => {
                Box::pin(self.token.serve(entry.stream, client, entry.ticket)).await
            }
            Listener::Tls => Box::pin(self.serve_tls(entry, client)).await,
        }
    }

    async fn serve_tls(&self, entry: Entry, client: Client) {
        let Some(tls) = &self.tls else { return };
        let admit = &self.ssh.admit;
        let ticket = &entry.ticket;
        let refused = |rejection: Rejection| {
            // A cut by the grace deadline is recorded as such when it fires.
            if !ticket.expired() {
                admit.reject(&client, &rejection);
            }
        };
        let Some((first, stream, sni)) = Box::pin(tls.accept(entry.stream, refused)).await else {
            return;
        };
        match first {
            FirstByte::Ssh => {}
            FirstByte::Eof => {
                return admit.reject(
                    &client,
                    &Rejection::new(Reason::Eof, "closed after the TLS handshake"),
                );
            }
            // Anything but `S` is the length prefix of a token preamble (front B).
            FirstByte::Other => {
                return Box::pin(self.token.serve(stream, client, entry.ticket)).await;
            }
        }
        let target = match sni {
            Some(name) => admit.parse_host(&client, &name),
            None => {
                let message = format!(
                    "TLS without SNI: set the server name to the workload host (e.g. ssh-edge connect %h, or openssl s_client -servername %h); expected {}",
                    admit.grammar.expected()
                );
                admit.reject(&client, &Rejection::new(Reason::NoSni, &message));
                Err(message)
            }
        };
        self.ssh
            .serve(stream, client, Front::Tls, Some(target), entry.ticket)
            .await;
    }
}
