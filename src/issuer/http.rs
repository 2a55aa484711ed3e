//! The HTTP(S) adapter: hyper 1 HTTP/1.1, bounded header time, body size and connection count.
//! Everything it decides comes from [`super::api`] (Api-Key routes) and [`super::control`]
//! (Bearer routes, adapted in [`super::control_http`]); this file only moves bytes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::api::{self, ApiError, MAX_BODY, Route};
use super::config::{IssuerConfig, IssuerTls};
use super::control::{self, ControlPlane};
use super::sign::{self, Issuance, IssueError};
use super::workload::{WorkloadId, WorkloadKey};
use crate::text::quote_untrusted;

/// Time a client has to send a request head.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time a client has to send a request body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection (keep-alive included) may stay open.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);
/// Connections served at once; more wait in the accept queue.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

struct State {
    config: IssuerConfig,
    control: Arc<ControlPlane>,
}

/// Builds the rustls acceptor (aws-lc-rs provider, TLS 1.2 and 1.3, ALPN http/1.1).
pub(crate) fn tls_acceptor(tls: &IssuerTls) -> Result<TlsAcceptor, rustls::Error> {
    let config =
        crate::tls::server_config(tls.cert_chain.clone(), tls.key.clone_key(), &[b"http/1.1"])?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves the API on `listener` until the process ends (HTTPS when the config has TLS).
pub async fn serve(config: IssuerConfig, listener: TcpListener) -> Result<(), rustls::Error> {
    let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
    let control = Arc::new(ControlPlane::new(
        &config.settings.suffix,
        config.control.edge_token_sha256,
        config.control.admin_token_sha256,
        &config.control.workloads,
    ));
    let state = Arc::new(State { config, control });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "issuer: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_connection(state, tls, peer).await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "issuer: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "issuer: TLS handshake timed out"),
                    }
                }
                None => serve_connection(state, stream, peer).await,
            }
        });
    }
}

async fn serve_connection<S>(state: Arc<State>, stream: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req, peer).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_BODY)
        .serve_connection(TokioIo::new(stream), service);
    if let Ok(Err(e)) = tokio::time::timeout(CONNECTION_LIFETIME, conn).await {
        tracing::debug!(%peer, error = %e, "issuer: connection ended with an error");
    }
}

async fn handle(state: &State, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    if let Some(side) = control::side(req.uri().path()) {
        return super::control_http::handle(&state.control, side, req, peer).await;
    }
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let result = respond(state, req).await;
    let (status, body) = match result {
        Ok(ok) => {
            tracing::info!(%peer, method, path = %quote_untrusted(&path, 200), tenant = ok.tenant, api_key = ok.api_key_id, host = ok.host.as_deref().unwrap_or(""), serial = ok.serial, "issuer: request served");
            (200, ok.body)
        }
        Err(e) => {
            tracing::info!(%peer, method = %quote_untrusted(&method, 20), path = %quote_untrusted(&path, 200), status = e.status(), error = %e, "issuer: request refused");
            (e.status(), json!({ "error": e.to_string() }))
        }
    };
    let mut response = json_response(status, &body);
    let headers = response.headers_mut();
    if status == 401 {
        headers.insert(WWW_AUTHENTICATE, "Api-Key".parse().expect("static header"));
    }
    if status == 405 {
        headers.insert(ALLOW, "POST".parse().expect("static header"));
    }
    response
}

/// A JSON response with `status`.
pub(super) fn json_response(status: u16, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    response.headers_mut().insert(
        CONTENT_TYPE,
        "application/json".parse().expect("static header"),
    );
    response
}

/// The request body, bounded by [`MAX_BODY`] (declared and actual) and [`BODY_TIMEOUT`].
pub(super) async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return Err(ApiError::BodyTooLarge);
    }
    let collected = tokio::time::timeout(
        BODY_TIMEOUT,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    .map_err(|_| ApiError::BodyTimeout)?
    .map_err(|e| {
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            ApiError::BodyTooLarge
        } else {
            ApiError::BodyTimeout
        }
    })?;
    Ok(collected.to_bytes())
}

struct Served {
    body: Value,
    tenant: String,
    api_key_id: String,
    host: Option<String>,
    serial: u64,
}

async fn respond(state: &State, req: Request<Incoming>) -> Result<Served, ApiError> {
    let route = api::route(req.method().as_str(), req.uri().path())?;
    let config = &state.config;
    let key = api::api_key_from_header(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))?;
    let caller = api::authenticate(&config.tenants, key)?;
    let body = read_body(req).await?;
    let mut served = Served {
        body: Value::Null,
        tenant: caller.tenant.name.clone(),
        api_key_id: caller.api_key_id.to_string(),
        host: None,
        serial: 0,
    };
    if route == Route::SearchJobs {
        let job_id = api::parse_search(&body)?;
        served.body = api::search(caller.tenant, &job_id)?;
        return Ok(served);
    }
    let request = api::parse_sign(&route, &body)?;
    api::authorize(caller.tenant, &request.workload)?;
    let issued = sign::issue(
        &config.settings,
        &caller,
        &request,
        &Issuance::random(crate::time::unix_now()),
    )
    .map_err(|e| match e {
        IssueError::Api(e) => e,
        other => {
            tracing::error!(tenant = caller.tenant.name, error = %other, "issuer: signing failed");
            ApiError::Internal
        }
    })?;
    wake_on_sign(state, &caller.tenant.name, &request.workload, &issued.host);
    served.body = issued.body;
    served.host = Some(issued.host);
    served.serial = issued.serial;
    Ok(served)
}

/// A sign is the earliest sign of intent to connect, so it wakes an asleep on-demand workload
/// exactly as the edge's activate call would.
fn wake_on_sign(state: &State, tenant: &str, workload: &api::Workload, host: &str) {
    let key = WorkloadKey {
        tenant: tenant.to_string(),
        id: WorkloadId::from(workload),
    };
    match state.control.activate_on_sign(&key, host) {
        Some(Some(activation)) => {
            tracing::info!(host, tenant, "issuer: sign wakes on-demand workload");
            super::activate::spawn(state.control.clone(), activation);
        }
        Some(None) => tracing::info!(
            host,
            tenant,
            "issuer: sign woke on-demand workload (no on_activate command), running"
        ),
        None => {}
    }
}
