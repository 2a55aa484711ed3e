//! `ssh-edge connect HOST`: the ProxyCommand for front A (TLS to the edge with SNI set to the
//! workload host) or, with a token, front B; then pipes stdin/stdout through it until either
//! side ends.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::http::uri::Authority;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// What the user asked `ssh-edge connect` to do.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Workload host, sent as SNI.
    pub host: String,
    /// Edge address, `host:port`.
    pub edge: String,
    /// PEM file of CA certificates to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Front B: send this token as the preamble. SNI is then the edge's own name (the host part
    /// of `edge`), as the installed helpers do, and the target comes from the token.
    pub token: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("no trusted CA certificates found (system store empty; pass --ca-file)")]
    NoRoots,
    #[error(
        "the edge rejected the token (status 0x{0:02x}): is it expired, already used (a token opens one connection), or for another workload?"
    )]
    Rejected(u8),
    #[error("the edge closed the connection before answering the token")]
    NoAnswer,
    #[error("\"{0}\" is not a valid TLS server name")]
    BadName(String),
    #[error("cannot connect to edge {edge}: {reason}")]
    Connect { edge: String, reason: String },
    #[error("TLS handshake with edge {edge} failed: {reason}")]
    Tls { edge: String, reason: String },
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// Trust anchors: the PEM file given, else the system store (honours SSL_CERT_FILE).
pub(crate) fn roots(ca_file: Option<&PathBuf>) -> Result<RootCertStore, ConnectError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let err = |reason: String| ConnectError::CaFile {
                path: path.clone(),
                reason,
            };
            let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots
                    .add(cert.map_err(|e| err(e.to_string()))?)
                    .map_err(|e| err(e.to_string()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(ConnectError::NoRoots);
    }
    Ok(roots)
}

/// Runs the proxy until the edge or stdin/stdout ends.
pub async fn run(opts: &ConnectOptions) -> Result<(), ConnectError> {
    let config = crate::tls::client_config(roots(opts.ca_file.as_ref())?)?;
    let edge_host = opts.edge.parse::<Authority>();
    let sni = match (&opts.token, &edge_host) {
        // Token mode: SNI is the edge's own name (the target travels in the token).
        (Some(_), Ok(edge)) => edge.host().trim_matches(['[', ']']),
        // Not HOST:PORT: refused below, as a server name.
        (Some(_), Err(_)) => opts.edge.as_str(),
        (None, _) => opts.host.trim_end_matches('.'),
    };
    let name = ServerName::try_from(sni.to_string())
        .map_err(|_| ConnectError::BadName(sni.to_string()))?;
    let tcp = TcpStream::connect(&opts.edge)
        .await
        .map_err(|e| ConnectError::Connect {
            edge: opts.edge.clone(),
            reason: e.to_string(),
        })?;
    let _ = tcp.set_nodelay(true);
    let tls = TlsConnector::from(Arc::new(config))
        .connect(name, crate::front::tls::buffered(tcp))
        .await
        .map_err(|e| ConnectError::Tls {
            edge: opts.edge.clone(),
            reason: e.to_string(),
        })?;
    let mut tls = tls;
    if let Some(token) = &opts.token {
        let mut preamble = (token.len() as u32).to_be_bytes().to_vec();
        preamble.extend_from_slice(token);
        let io = |e: std::io::Error| ConnectError::Connect {
            edge: opts.edge.clone(),
            reason: e.to_string(),
        };
        tls.write_all(&preamble).await.map_err(io)?;
        tls.flush().await.map_err(io)?;
        let mut status = [0u8; 1];
        match tls.read(&mut status).await {
            Ok(1) if status[0] == 0 => {}
            Ok(1) => return Err(ConnectError::Rejected(status[0])),
            _ => return Err(ConnectError::NoAnswer),
        }
    }
    // Pipes and sockets (what ssh gives a ProxyCommand) without the blocking pool; anything
    // else through tokio's stdio.
    let (input, _restore_input) = crate::stdio::stdin();
    let (output, _restore_output) = crate::stdio::stdout();
    // How the session ends (an EOF or a reset) is ssh's to report, not the relay's.
    let _ = crate::splice::relay(tls, input, output).await;
    Ok(())
}
