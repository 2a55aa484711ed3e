//! The control plane's HTTP(S) client: the crate's pooled client ([`crate::http_client`]:
//! keep-alive connections, so a lookup costs one request, not a handshake), each request
//! bounded in time and answer size.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};

use super::status::{WorkloadStatus, parse_status};
use crate::http_client::{ExchangeError, HttpsClient};
use crate::text::escape_untrusted;

/// Largest answer read.
pub(crate) const MAX_ANSWER: usize = 64 * 1024;

/// Why the control plane gave no usable answer. `outcome` is the metric label.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlPlaneError {
    #[error("cannot reach the control plane: {0}")]
    Unreachable(String),
    #[error("no answer from the control plane within {} ms", .0.as_millis())]
    Timeout(Duration),
    #[error("the control plane answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the control plane's answer is not a workload status: {0}")]
    BadAnswer(String),
    #[error("bad request URL: {0}")]
    Url(String),
}

impl ControlPlaneError {
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable(_) | Self::Url(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::Status { .. } => "http_error",
            Self::BadAnswer(_) => "bad_answer",
        }
    }
}

/// One control plane: its base URL, bearer token and the pooled client.
pub(crate) struct ControlPlaneClient {
    base: String,
    token: Option<String>,
    timeout: Duration,
    client: HttpsClient,
}

impl ControlPlaneClient {
    pub(crate) fn new(
        base: &str,
        token: Option<String>,
        roots: rustls::RootCertStore,
        timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let client = crate::http_client::build(crate::tls::client_config(roots)?, timeout);
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            timeout,
            client,
        })
    }

    /// `GET {url}/v1/edge/workloads/{host}`.
    pub(crate) async fn status(&self, host: &str) -> Result<WorkloadStatus, ControlPlaneError> {
        self.call(Method::GET, &format!("/v1/edge/workloads/{host}"), false)
            .await
    }

    /// `POST {url}/v1/edge/workloads/{host}/activate`; the answer is the status after it.
    /// A 409 (the workload cannot be woken) carries a status too.
    pub(crate) async fn activate(&self, host: &str) -> Result<WorkloadStatus, ControlPlaneError> {
        self.call(
            Method::POST,
            &format!("/v1/edge/workloads/{host}/activate"),
            true,
        )
        .await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        status_on_conflict: bool,
    ) -> Result<WorkloadStatus, ControlPlaneError> {
        let uri = format!("{}{path}", self.base);
        let mut request = Request::builder().method(method).uri(&uri);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = if status_on_conflict { "{}" } else { "" };
        let request = request
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .map_err(|e| ControlPlaneError::Url(escape_untrusted(&e.to_string(), 200)))?;
        let exchange = async {
            crate::http_client::exchange(&self.client, request, MAX_ANSWER)
                .await
                .map_err(|e| match e {
                    ExchangeError::Connect(reason) | ExchangeError::Request(reason) => {
                        ControlPlaneError::Unreachable(reason)
                    }
                    ExchangeError::TooLarge => ControlPlaneError::BadAnswer(format!(
                        "answer larger than {MAX_ANSWER} bytes"
                    )),
                    ExchangeError::Body(reason) => ControlPlaneError::BadAnswer(reason),
                })
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ControlPlaneError::Timeout(self.timeout))??;
        match status {
            200..=299 => parse_status(&body).map_err(ControlPlaneError::BadAnswer),
            409 if status_on_conflict => parse_status(&body).map_err(ControlPlaneError::BadAnswer),
            _ => Err(ControlPlaneError::Status {
                status,
                body: escape_untrusted(&String::from_utf8_lossy(&body), 200),
            }),
        }
    }
}
