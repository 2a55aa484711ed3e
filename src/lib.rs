//! ssh-edge: a multi-tenant SSH edge proxy.
//!
//! Users run `ssh training-job-abc1234-0.ssh.baseten.co` and land in one container out of
//! thousands. The edge authenticates them by OpenSSH certificate, parses the workload host name,
//! finds the backend sshd and bridges SSH channels to it.
//!
//! # Layout
//! - [`config`]: figment (defaults → TOML → `SSH_EDGE_*`), validated into typed settings.
//! - [`hostname`]: pure parser for `<workload>[.<remote>].<suffix>`; kinds are config data.
//! - [`route`]: pure target → backend table.
//! - [`auth`]: pure certificate policy (CA, principals, validity, critical options, revocation)
//!   and ES256 token verification.
//! - [`admission`]: the pipeline every connection passes first — PROXY protocol, pre-auth
//!   limits, the login-grace deadline on the socket.
//! - [`front`]: the public doors — `tls` (SNI, first-byte detection), `ssh` (russh handler),
//!   `token` (front B preamble and passthrough), `admit` (the shared route/policy/backend
//!   step).
//! - [`reject`]: why a connection was refused, typed, counted and logged in one place (used by
//!   the admission pipeline and the fronts).
//! - [`upstream`]: the edge as SSH client of backends: host-key checks, minted certificates.
//! - [`bridge`]: channel ⇄ channel forwarding, the hot path (terminate mode).
//! - [`splice`]: byte-stream forwarding, the hot path (passthrough mode, front B);
//!   [`read_ahead`]: the read-ahead under TLS.
//! - [`edge`]: listeners, configuration generations and per-connection tasks.
//! - [`server`]: the lifecycle as one call, `server::run(config, source, shutdown)`: serve,
//!   reload, drain (the binary only maps signals onto it).
//! - [`audit`]: the JSON-lines audit stream (sessions, channels, exec, denials, kills).
//! - [`session`]: the count of open sessions, and waiting for none (drain).
//! - [`sessions_cli`]: `ssh-edge sessions list|kill`, the sessions admin API of every replica
//!   at once (`--admin` URLs or DNS: A/AAAA or SRV records).
//! - [`metrics`]: Prometheus registry owned by a struct; [`admin`] serves it over HTTP.
//! - [`connect`]: `ssh-edge connect`, the TLS ProxyCommand.
//! - [`http_client`]: the one HTTP(S) client builder (hyper, hyper-rustls); [`http_auth`] the
//!   `Authorization` header every HTTP server here reads.
//! - [`helper`]: `ssh-edge setup` / `sign`, our own client helper for the signing API.
//! - [`lab`]: throwaway keys, CAs and a loopback sshd for `ssh-edge demo` and the tests.
//! - [`time`]: seconds since the epoch, the one clock reading.
//! - [`ssh_cert`]: OpenSSH keys and user certificates (one builder, named extension sets).
//! - [`tls`]: every rustls configuration, on the one provider (aws-lc-rs).
//! - [`uri`]: the port check `hyper::Uri` leaves to its callers.
//! - [`text`]: untrusted text escaped to printable ASCII and capped for log lines and errors.
// One exception, commented where it is: `memory::release` (glibc's malloc_trim).
#![deny(unsafe_code)]
// `pub` is the crate's API (what the binary, the tests, the load generator and the fuzz
// targets use); everything else is `pub(crate)`, and this lint (an error in CI) keeps it so.
#![warn(unreachable_pub)]
// The module map above is for readers of the source, crate-private modules included.
#![allow(rustdoc::private_intra_doc_links)]

pub mod admin;
pub mod admission;
pub mod audit;
pub mod auth;
pub(crate) mod bridge;
pub mod bytes_count;
pub mod config;
pub mod connect;
pub mod control_plane;
pub mod edge;
pub(crate) mod front;
#[doc(hidden)]
pub mod fuzz_entry;
pub mod helper;
pub mod hostname;
pub(crate) mod http_auth;
pub mod http_client;
pub mod issuer;
pub mod lab;
pub mod memory;
pub mod metrics;
pub(crate) mod read_ahead;
#[cfg(test)]
mod readme_labels_tests;
pub(crate) mod reject;
pub mod route;
pub mod server;
pub mod session;
pub mod sessions_cli;
pub(crate) mod splice;
pub(crate) mod ssh_cert;
pub(crate) mod stdio;
pub(crate) mod text;
pub mod time;
pub mod tls;
pub mod upstream;
pub(crate) mod uri;
pub(crate) mod workers;
