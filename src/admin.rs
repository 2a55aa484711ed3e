//! The admin HTTP endpoint for ops: `/metrics` (Prometheus text format), `/healthz`, `/readyz`.
//! A deliberately tiny HTTP/1.1 responder: one request per connection, bounded head size and
//! read time, so a misbehaving scraper cannot tie it up.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::metrics::Metrics;

const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves the admin endpoint until the process ends.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    draining: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let metrics = metrics.clone();
        let draining = *draining.borrow();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, respond(stream, &metrics, draining)).await;
        });
    }
}

async fn respond(mut stream: TcpStream, metrics: &Metrics, draining: bool) -> std::io::Result<()> {
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
    let (status, content_type, body) = match (method, path) {
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
            "not found: try /metrics, /healthz, /readyz\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
