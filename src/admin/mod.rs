//! The admin HTTP endpoint for ops: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.
//! A deliberately tiny HTTP/1.1 responder: one request per connection, bounded head size and
//! read time, so a misbehaving scraper cannot tie it up. With `admin.bearer_token_file` set,
//! every path but the probes (`/healthz`, `/readyz`) needs `Authorization: Bearer <token>`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod sessions;

use crate::metrics::Metrics;
use crate::session::Sessions;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The bearer token in force (the current configuration's), if any.
pub type TokenSource = Arc<dyn Fn() -> Option<Arc<str>> + Send + Sync>;

/// Serves the admin endpoint until the process ends.
pub async fn serve(
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
        let metrics = metrics.clone();
        let draining = *draining.borrow();
        let token = token();
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(
                READ_TIMEOUT,
                respond(stream, &metrics, &sessions, draining, token.as_deref()),
            )
            .await;
        });
    }
}

/// Whether the request head carries `Authorization: Bearer <token>` (compared in constant
/// time).
fn authorized(head: &[u8], token: &str) -> bool {
    let text = String::from_utf8_lossy(head);
    text.lines().skip(1).any(|line| {
        let Some((name, value)) = line.split_once(':') else {
            return false;
        };
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return false;
        }
        let value = value.trim();
        let Some(presented) = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
            .map(|_| value[7..].trim())
        else {
            return false;
        };
        aws_lc_rs::constant_time::verify_slices_are_equal(presented.as_bytes(), token.as_bytes())
            .is_ok()
    })
}

async fn respond(
    mut stream: TcpStream,
    metrics: &Metrics,
    sessions: &Sessions,
    draining: bool,
    token: Option<&str>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let probe = matches!(path, "/healthz" | "/readyz");
    let denied = !probe && token.is_some_and(|t| !authorized(&head, t));
    let (status, content_type, body) = match (method, path) {
        _ if denied => (
            "401 Unauthorized\r\nWWW-Authenticate: Bearer",
            "text/plain",
            "unauthorized: send Authorization: Bearer <token from admin.bearer_token_file>\n"
                .to_string(),
        ),
        (method, target) if target.starts_with("/sessions") => sessions::route(
            sessions, method, target,
        )
        .unwrap_or(("404 Not Found", "text/plain", "not found\n".to_string())),
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics.render()),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if draining => (
            "503 Service Unavailable",
            "text/plain",
            "draining\n".to_string(),
        ),
        ("GET", "/readyz") => ("200 OK", "text/plain", "ready\n".to_string()),
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics, /healthz, /readyz, /sessions\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served here (DELETE and POST under /sessions)\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn bearer_tokens_are_checked() {
        let head =
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nauthorization: Bearer s3cret-token-0123\r\n\r\n";
        assert!(authorized(head, "s3cret-token-0123"));
        assert!(!authorized(head, "s3cret-token-0124"));
        assert!(!authorized(head, "s3cret-token-012"));
        let basic = b"GET /metrics HTTP/1.1\r\nAuthorization: Basic s3cret-token-0123\r\n\r\n";
        assert!(!authorized(basic, "s3cret-token-0123"));
        assert!(!authorized(
            b"GET /metrics HTTP/1.1\r\n\r\n",
            "s3cret-token-0123"
        ));
        // The request line is no header.
        assert!(!authorized(b"Authorization: Bearer t\r\n\r\n", "t"));
    }
}
