//! The admin HTTP endpoint for ops: `/metrics` (Prometheus text format), `/healthz`, `/readyz`
//! and the sessions API ([`sessions`]). Served by hyper, the issuer's HTTP stack: one request
//! per connection, bounded head size and read time, so a misbehaving scraper cannot tie it up.
//! With `admin.bearer_token_file` set, every path but the probes (`/healthz`, `/readyz`) needs
//! `Authorization: Bearer <token>`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

mod sessions;

use crate::metrics::Metrics;
use crate::session::Sessions;

/// Largest request head read (hyper's smallest buffer limit).
const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one connection (its one request and answer) may take.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The bearer token in force (the current configuration's), if any.
pub(crate) type TokenSource = Arc<dyn Fn() -> Option<Arc<str>> + Send + Sync>;

/// What one request sees: read when its connection is accepted.
struct View {
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    draining: bool,
    token: Option<Arc<str>>,
}

/// Serves the admin endpoint until the process ends.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    draining: tokio::sync::watch::Receiver<bool>,
    token: TokenSource,
    sessions: Arc<Sessions>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let view = Arc::new(View {
            metrics: metrics.clone(),
            sessions: sessions.clone(),
            draining: *draining.borrow(),
            token: token(),
        });
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let view = view.clone();
                async move { Ok::<_, Infallible>(respond(&view, &req)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
        });
    }
}

/// Whether the headers carry `Authorization: Bearer <token>` (compared in constant time).
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(AUTHORIZATION).iter().any(|value| {
        crate::http_auth::credential(Some(value.as_bytes()), "Bearer").is_some_and(|presented| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                presented.as_bytes(),
                token.as_bytes(),
            )
            .is_ok()
        })
    })
}

fn respond(view: &View, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let probe = matches!(path, "/healthz" | "/readyz");
    let denied = !probe
        && view
            .token
            .as_deref()
            .is_some_and(|t| !authorized(req.headers(), t));
    let text = "text/plain";
    let (status, content_type, body) = match (req.method(), path) {
        _ if denied => (
            StatusCode::UNAUTHORIZED,
            text,
            "unauthorized: send Authorization: Bearer <token from admin.bearer_token_file>\n"
                .to_string(),
        ),
        (method, path) if path.starts_with("/sessions") => {
            let target = req.uri().path_and_query().map_or(path, |pq| pq.as_str());
            sessions::route(&view.sessions, method.as_str(), target).unwrap_or((
                StatusCode::NOT_FOUND,
                text,
                "not found\n".to_string(),
            ))
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            view.metrics.render(),
        ),
        (&Method::GET, "/healthz") => (StatusCode::OK, text, "ok\n".to_string()),
        (&Method::GET, "/readyz") if view.draining => (
            StatusCode::SERVICE_UNAVAILABLE,
            text,
            "draining\n".to_string(),
        ),
        (&Method::GET, "/readyz") => (StatusCode::OK, text, "ready\n".to_string()),
        (&Method::GET, _) => (
            StatusCode::NOT_FOUND,
            text,
            "not found: try /metrics, /healthz, /readyz, /sessions\n".to_string(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            "only GET is served here (DELETE and POST under /sessions)\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if status == StatusCode::UNAUTHORIZED {
        headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn bearer_tokens_are_checked() {
        let sent = headers(&[("host", "x"), ("authorization", "Bearer s3cret-token-0123")]);
        assert!(authorized(&sent, "s3cret-token-0123"));
        assert!(!authorized(&sent, "s3cret-token-0124"));
        assert!(!authorized(&sent, "s3cret-token-012"));
        let lower = headers(&[("Authorization", "bearer s3cret-token-0123")]);
        assert!(authorized(&lower, "s3cret-token-0123"));
        let basic = headers(&[("Authorization", "Basic s3cret-token-0123")]);
        assert!(!authorized(&basic, "s3cret-token-0123"));
        assert!(!authorized(&HeaderMap::new(), "s3cret-token-0123"));
        // Any one of several Authorization headers may carry it.
        let two = headers(&[("Authorization", "Basic x"), ("Authorization", "Bearer t")]);
        assert!(authorized(&two, "t"));
    }
}
