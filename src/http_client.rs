//! The one HTTP(S) client builder: hyper's pooled client over hyper-rustls, used by the control
//! plane client and the signing-API helper. Pooled keep-alive connections, so a second request
//! costs no handshake; `http://` and `https://` URLs both work, the scheme decides.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::text::escape_untrusted;

/// A pooled HTTP/1.1 client with TLS, sending whole (`Full`) bodies.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// A client trusting what `tls` trusts; a TCP connect gives up after `connect_timeout`.
#[must_use]
pub(crate) fn build(tls: rustls::ClientConfig, connect_timeout: Duration) -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}

/// A client for plain `http://` URLs (it trusts no TLS server).
///
/// # Errors
/// rustls cannot build a client configuration (not with aws-lc-rs).
pub(crate) fn plain(connect_timeout: Duration) -> Result<HttpsClient, rustls::Error> {
    let tls = crate::tls::client_config(rustls::RootCertStore::empty())?;
    Ok(build(tls, connect_timeout))
}

/// Why a request got no whole answer (its status is for the caller to judge).
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// No connection: refused, unreachable, the connect timeout.
    Connect(String),
    /// Connected, but the request or the answer's head failed.
    Request(String),
    /// The answer's body passed the size cap.
    TooLarge,
    /// The answer's body could not be read to its end.
    Body(String),
}

/// Sends `request` and reads the answer to its end (whatever its framing), at most `max_body`
/// bytes of body: its status and body. The caller bounds the time.
///
/// # Errors
/// [`ExchangeError`]: which step failed, with hyper's error chain (escaped).
pub(crate) async fn exchange(
    client: &HttpsClient,
    request: Request<Full<Bytes>>,
    max_body: usize,
) -> Result<(u16, Bytes), ExchangeError> {
    let response = client.request(request).await.map_err(|e| {
        if e.is_connect() {
            ExchangeError::Connect(error_chain(&e))
        } else {
            ExchangeError::Request(error_chain(&e))
        }
    })?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), max_body)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                ExchangeError::TooLarge
            } else {
                ExchangeError::Body(error_chain(e.as_ref()))
            }
        })?
        .to_bytes();
    Ok((status, body))
}

/// "client error (Connect): tcp connect error: Connection refused": hyper's error with its
/// causes, which is where the useful part is (escaped and capped: it may quote the peer).
#[must_use]
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    escape_untrusted(&text, 300)
}
