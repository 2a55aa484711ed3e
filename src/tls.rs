//! Every rustls configuration the crate builds, on the one crypto provider (aws-lc-rs) and the
//! safe default protocol versions (TLS 1.2 and 1.3): the edge's and the issuer's servers, and
//! the clients of `connect`, the helper and the control plane.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The crypto provider of every configuration: aws-lc-rs.
#[must_use]
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A server configuration presenting `cert_chain` (no client certificates), offering `alpn`.
///
/// # Errors
/// rustls refuses the key or the chain.
pub(crate) fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration trusting `roots` (no client certificate).
///
/// # Errors
/// The provider supports none of the default protocol versions (not with aws-lc-rs).
pub fn client_config(roots: RootCertStore) -> Result<ClientConfig, rustls::Error> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
