//! The control plane's HTTP(S) client: hyper's pooled client (keep-alive connections, so a
//! lookup costs one request, not a handshake), rustls with the aws-lc-rs provider, each
//! request bounded in time and answer size.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::status::{WorkloadStatus, parse_status};
use crate::text::escape_untrusted;

/// Largest answer read.
pub const MAX_ANSWER: usize = 64 * 1024;

/// Why the control plane gave no usable answer. `outcome` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
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
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable(_) | Self::Url(_) => "unreachable",
            Self::Timeout(_) => "timeout",
            Self::Status { .. } => "http_error",
            Self::BadAnswer(_) => "bad_answer",
        }
    }
}

/// One control plane: its base URL, bearer token and the pooled client.
pub struct ControlPlaneClient {
    base: String,
    token: Option<String>,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl ControlPlaneClient {
    pub fn new(
        base: &str,
        token: Option<String>,
        roots: rustls::RootCertStore,
        timeout: Duration,
    ) -> Result<Self, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            timeout,
            client,
        })
    }

    /// `GET {url}/v1/edge/workloads/{host}`.
    pub async fn status(&self, host: &str) -> Result<WorkloadStatus, ControlPlaneError> {
        self.call(Method::GET, &format!("/v1/edge/workloads/{host}"), false)
            .await
    }

    /// `POST {url}/v1/edge/workloads/{host}/activate`; the answer is the status after it.
    /// A 409 (the workload cannot be woken) carries a status too.
    pub async fn activate(&self, host: &str) -> Result<WorkloadStatus, ControlPlaneError> {
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
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| ControlPlaneError::Unreachable(error_chain(&e)))?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| ControlPlaneError::BadAnswer(escape_untrusted(&e.to_string(), 200)))?
                .to_bytes();
            Ok::<_, ControlPlaneError>((status, body))
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

/// "client error (Connect): tcp connect error: Connection refused": hyper's error with its
/// causes, which is where the useful part is.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    escape_untrusted(&text, 300)
}
