//! `ssh-edge issuer`: the signing API the vendor's installed helpers call before connecting
//! through front B.
//!
//! A helper authenticates with `Authorization: Api-Key <key>` and asks for a user certificate
//! for its public key and a token for one workload:
//!
//! - `POST /v1/training_jobs/search` `{"job_id": J}` → `{"training_jobs": [{"id": J,
//!   "training_project": {"id": P}}]}`;
//! - `POST /v1/training_projects/P/jobs/J/ssh/sign` `{"public_key": K, "replica_id": N}`;
//! - `POST /v1/models/M/deployments/D/ssh/sign` `{"public_key": K[, "replica_id": R]}`.
//!
//! A sign answers `{"ssh_certificate", "jwt", "proxy_address", "ssh_cert_expires_at"}`: a user
//! certificate from the tenant's user CA (principal = job or model id) and an ES256 token whose
//! `host` claim is the workload host name under the tenant's remote. Errors are
//! `{"error": "..."}` with a 4xx status. A workload the caller's tenant does not own is answered
//! exactly like an unknown one (404), by search and sign alike, so no tenant learns which ids
//! exist elsewhere; 403 is never used.
//!
//! It is also the control plane the edges ask before connecting to a workload that may be
//! asleep (`Authorization: Bearer <token>`, one token for the edges, one for operators):
//!
//! - `GET /v1/edge/workloads/<host>` → `{"state", "session_expires_at", "message"}`;
//! - `POST /v1/edge/workloads/<host>/activate` wakes an `activatable` workload (its
//!   `on_activate` command runs once per activation); a sign for it does the same;
//! - `GET /v1/admin/workloads/<host>`, `POST .../state`, `POST .../expiry` for operators.
//!
//! Layout: [`api`] (routing, API keys, validation, ownership) and [`sign`] (certificate,
//! token, answer) are the pure logic, unit-tested; [`workload`] (host parsing, states,
//! messages) and [`control`] (state table, transitions, control routes) the control plane's
//! pure logic; [`config`] the typed, validated configuration; [`http`] the thin hyper adapter,
//! [`control_http`] its control-plane routes; [`activate`] runs `on_activate` commands.

pub mod activate;
pub mod api;
pub(crate) mod config;
pub(crate) mod control;
pub(crate) mod control_http;
pub(crate) mod http;
pub mod sign;
pub(crate) mod workload;

#[cfg(test)]
mod control_tests;
#[cfg(test)]
mod serve_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod workload_tests;

use std::net::SocketAddr;
use std::path::PathBuf;

pub use config::{IssuerConfig, IssuerConfigError, RawIssuerConfig, load, validate};
pub use http::serve;

/// Why the issuer could not run.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error(transparent)]
    Config(#[from] IssuerConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// `ssh-edge issuer --config FILE`: loads the config, listens, serves until Ctrl-C.
pub async fn run(config: PathBuf) -> Result<(), IssuerError> {
    let config = load(&config)?;
    let addr = config.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| IssuerError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let tenants: Vec<&str> = config.tenants.iter().map(|t| t.name.as_str()).collect();
    tracing::info!(listen = %local, scheme, ?tenants, proxy_address = config.settings.proxy_address, "ssh-edge issuer listening");
    tokio::select! {
        r = serve(config, listener) => r?,
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
    }
    Ok(())
}
