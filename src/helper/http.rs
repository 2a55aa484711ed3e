//! The signing-API client of `setup`/`sign`: JSON POSTs over the crate's pooled hyper client
//! ([`crate::http_client`]; TLS with rustls for `https://`), the base URL parsed by
//! [`hyper::Uri`]. Whatever framing the server picks (Content-Length, chunked, to EOF) hyper
//! reads; the answer is bounded in size and time.

use std::path::Path;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Uri};

use crate::http_client::{ExchangeError, HttpsClient};

/// Largest response body accepted.
pub(crate) const MAX_RESPONSE: usize = 1 << 20;
/// Longest one request (connect, TLS, answer) may take.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("signing API URL \"{0}\" must look like https://host[:port] or http://host[:port]")]
    BadUrl(String),
    #[error("cannot reach the signing API at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the signing API at {url} did not answer within {secs}s")]
    Timeout { url: String, secs: u64 },
    #[error("the signing API at {url} sent a malformed response: {reason}")]
    Malformed { url: String, reason: String },
}

/// A checked base URL: `http` or `https`, a host, an optional port, no path beyond `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BaseUrl {
    /// `scheme://authority`, without a trailing slash.
    origin: String,
}

impl BaseUrl {
    /// # Errors
    /// [`HttpError::BadUrl`] for anything but `http(s)://host[:port][/]`.
    pub(crate) fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let scheme = uri.scheme_str().filter(|s| matches!(*s, "http" | "https"));
        let authority = uri.authority().filter(|a| !a.host().is_empty());
        // `Uri` drops a fragment without a word.
        let bare = matches!(uri.path(), "" | "/") && uri.query().is_none() && !url.contains('#');
        // A userinfo part (`user@host`) is no place for credentials: the API key has its header.
        match (scheme, authority) {
            (Some(scheme), Some(authority)) if bare && !authority.as_str().contains('@') => {
                crate::uri::explicit_port(authority).map_err(|_| bad())?;
                Ok(Self {
                    origin: format!("{scheme}://{authority}"),
                })
            }
            _ => Err(bad()),
        }
    }

    /// Whether requests go over TLS.
    #[must_use]
    pub(crate) fn tls(&self) -> bool {
        self.origin.starts_with("https://")
    }

    /// The URL of `path` (which starts with `/`) under this base.
    #[must_use]
    pub(crate) fn join(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

/// The signing API: its base URL and a pooled client trusting the configured CAs.
pub(crate) struct ApiClient {
    base: BaseUrl,
    client: HttpsClient,
}

impl ApiClient {
    /// A client for `base`; for `https://`, trusting `ca_file` or else the system store.
    ///
    /// # Errors
    /// [`HttpError::Connect`] when no trust anchors can be loaded.
    pub(crate) fn new(base: BaseUrl, ca_file: Option<&Path>) -> Result<Self, HttpError> {
        let connect = |reason: String| HttpError::Connect {
            url: base.join(""),
            reason,
        };
        // Plain HTTP needs no anchors; loading the system store could only fail needlessly.
        let client = if base.tls() {
            let roots = crate::connect::roots(ca_file.map(Path::to_path_buf).as_ref())
                .map_err(|e| connect(e.to_string()))?;
            crate::tls::client_config(roots).map(|tls| crate::http_client::build(tls, TIMEOUT))
        } else {
            crate::http_client::plain(TIMEOUT)
        }
        .map_err(|e| connect(e.to_string()))?;
        Ok(Self { client, base })
    }

    /// POSTs `body` as JSON to `path` and returns (status, parsed JSON body; `null` if empty).
    ///
    /// # Errors
    /// [`HttpError`] saying whether the API was unreachable, slow or answered nonsense.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        api_key: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, serde_json::Value), HttpError> {
        let url = self.base.join(path);
        let request = Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(AUTHORIZATION, format!("Api-Key {api_key}"))
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| HttpError::BadUrl(url.clone()))?;
        let exchange = async {
            let (status, body) = crate::http_client::exchange(&self.client, request, MAX_RESPONSE)
                .await
                .map_err(|e| match e {
                    ExchangeError::Connect(reason) | ExchangeError::Request(reason) => {
                        HttpError::Connect {
                            url: url.clone(),
                            reason,
                        }
                    }
                    ExchangeError::TooLarge => HttpError::Malformed {
                        url: url.clone(),
                        reason: format!("response larger than {MAX_RESPONSE} bytes"),
                    },
                    ExchangeError::Body(reason) => HttpError::Malformed {
                        url: url.clone(),
                        reason,
                    },
                })?;
            let json = parse_json(&body).map_err(|reason| HttpError::Malformed {
                url: url.clone(),
                reason: reason.to_string(),
            })?;
            Ok((status, json))
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.clone(),
                secs: TIMEOUT.as_secs(),
            })?
    }
}

/// A JSON body; an empty (or all-whitespace) one is `null`.
fn parse_json(body: &[u8]) -> Result<serde_json::Value, &'static str> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(body).map_err(|_| "body is not JSON")
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
