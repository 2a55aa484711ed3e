//! A minimal HTTP/1.1 JSON client for the signing API: one POST per connection, TLS (rustls,
//! aws-lc-rs) for `https://`, plain TCP for `http://`. Small on purpose: two endpoints, JSON in
//! and out, `Connection: close`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response body accepted.
const MAX_RESPONSE: usize = 1 << 20;
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

/// A parsed base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BaseUrl {
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let bad = || HttpError::BadUrl(url.to_string());
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h, p.parse().map_err(|_| bad())?)
            }
            _ => (authority, if tls { 443 } else { 80 }),
        };
        Ok(Self {
            tls,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
        })
    }
}

/// POSTs `body` as JSON to `path` and returns (status, parsed JSON body).
pub async fn post_json(
    base: &BaseUrl,
    path: &str,
    api_key: &str,
    body: &serde_json::Value,
    ca_file: Option<&Path>,
) -> Result<(u16, serde_json::Value), HttpError> {
    let url = format!(
        "{}://{}:{}{path}",
        if base.tls { "https" } else { "http" },
        base.host,
        base.port
    );
    let request = async {
        let tcp = TcpStream::connect((base.host.as_str(), base.port))
            .await
            .map_err(|e| HttpError::Connect {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let payload = body.to_string();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Api-Key {api_key}\r\nContent-Type: application/json\r\n\
             Accept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            base.host,
            payload.len()
        );
        if base.tls {
            let roots =
                crate::connect::roots(ca_file.map(Path::to_path_buf).as_ref()).map_err(|e| {
                    HttpError::Connect {
                        url: url.clone(),
                        reason: e.to_string(),
                    }
                })?;
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| HttpError::Connect {
                    url: url.clone(),
                    reason: e.to_string(),
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(base.host.clone())
                .map_err(|_| HttpError::BadUrl(url.clone()))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| HttpError::Connect {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
            exchange(tls, &head, &payload, &url).await
        } else {
            exchange(tcp, &head, &payload, &url).await
        }
    };
    tokio::time::timeout(TIMEOUT, request)
        .await
        .map_err(|_| HttpError::Timeout {
            url: url.clone(),
            secs: TIMEOUT.as_secs(),
        })?
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    head: &str,
    payload: &str,
    url: &str,
) -> Result<(u16, serde_json::Value), HttpError> {
    let io = |e: std::io::Error| HttpError::Connect {
        url: url.to_string(),
        reason: e.to_string(),
    };
    stream.write_all(head.as_bytes()).await.map_err(io)?;
    stream.write_all(payload.as_bytes()).await.map_err(io)?;
    stream.flush().await.map_err(io)?;
    let mut response = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&buf[..n]);
                if response.len() > MAX_RESPONSE {
                    return Err(malformed(url, "response larger than 1 MiB"));
                }
            }
            // Servers that close without close_notify: what we have is the response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(e)),
        }
    }
    parse_response(&response).map_err(|reason| malformed(url, reason))
}

fn malformed(url: &str, reason: &str) -> HttpError {
    HttpError::Malformed {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// Status code and JSON body of a `Connection: close` response (Content-Length or to EOF).
pub fn parse_response(raw: &[u8]) -> Result<(u16, serde_json::Value), &'static str> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| "headers are not UTF-8")?;
    let body = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Err("chunked responses are not supported");
    }
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let body = match length {
        Some(n) if n <= body.len() => &body[..n],
        Some(_) => return Err("body shorter than Content-Length"),
        None => body,
    };
    let json = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body).map_err(|_| "body is not JSON")?
    };
    Ok((status, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            BaseUrl::parse("https://api.example").unwrap(),
            BaseUrl {
                tls: true,
                host: "api.example".into(),
                port: 443
            }
        );
        assert_eq!(
            BaseUrl::parse("http://127.0.0.1:8444/").unwrap(),
            BaseUrl {
                tls: false,
                host: "127.0.0.1".into(),
                port: 8444
            }
        );
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://x/path").is_err());
        assert!(BaseUrl::parse("https://x:notaport").is_err());
    }

    #[test]
    fn parses_responses() {
        let (s, j) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"a\":1}\n").unwrap();
        assert_eq!((s, j["a"].as_i64()), (200, Some(1)));
        let (s, j) = parse_response(b"HTTP/1.1 403 Forbidden\r\n\r\n{\"error\":\"no\"}").unwrap();
        assert_eq!((s, j["error"].as_str()), (403, Some("no")));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{}").is_err());
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nnot json").is_err());
    }
}
