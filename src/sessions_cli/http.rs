//! One request to one replica's admin endpoint: plain HTTP/1.1 over a TCP stream, one request
//! per connection (the admin responder answers with `Connection: close`), the answer read to
//! its end, under a size cap and the caller's timeout. Nothing the peer sends is trusted: the
//! status line, headers and body are checked, and peer text in errors is escaped.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::targets::Target;
use crate::text::escape_untrusted;

/// The largest answer read (a list of some hundred thousand sessions).
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Why one replica gave no usable answer. Messages say what was expected.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("{reason}")]
    Resolve { reason: String },
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("sending the request: {0}")]
    Send(std::io::Error),
    #[error("reading the answer: {0}")]
    Receive(std::io::Error),
    #[error("no answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("answer larger than {MAX_RESPONSE} bytes")]
    TooLarge,
    #[error("not an HTTP answer: expected a status line like \"HTTP/1.1 200 OK\", got {line}")]
    NotHttp { line: String },
    #[error("answer cut short: Content-Length {expected}, got {got} bytes")]
    Truncated { expected: usize, got: usize },
    #[error("unsupported answer: Transfer-Encoding {0} (expected a Content-Length body)")]
    Encoding(String),
    #[error(
        "401 Unauthorized: the admin endpoint wants a bearer token (--token-file or SSH_EDGE_ADMIN_TOKEN_FILE)"
    )]
    NoToken,
    #[error("401 Unauthorized: the bearer token was refused")]
    TokenRefused,
    #[error("HTTP 404: {message}")]
    NotFound { message: String },
    #[error("HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("unexpected answer: expected JSON {expected}: {reason}")]
    Body {
        expected: &'static str,
        reason: String,
    },
}

/// An HTTP answer, parsed (pure).
#[derive(Debug, PartialEq, Eq)]
pub struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

/// The request bytes (pure).
pub fn request_head(target: &Target, method: &str, path: &str, token: Option<&str>) -> String {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ssh-edge/{version}\r\n\
         Accept: application/json\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
        host = target.replica,
        version = env!("CARGO_PKG_VERSION"),
    )
}

/// Splits a whole answer (read to EOF) into status and body (pure).
pub fn parse_answer(raw: &[u8]) -> Result<Answer<'_>, ReplicaError> {
    let first_line = || {
        let line = raw.split(|b| *b == b'\n').next().unwrap_or_default();
        crate::text::quote_untrusted(&String::from_utf8_lossy(line), 80)
    };
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(ReplicaError::NotHttp { line: first_line() });
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..600).contains(s));
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Err(ReplicaError::NotHttp { line: first_line() });
    };
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.trim().eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| ReplicaError::NotHttp {
                line: format!("Content-Length {}", crate::text::quote_untrusted(value, 40)),
            })?);
        } else if name.trim().eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(ReplicaError::Encoding(crate::text::quote_untrusted(
                value, 40,
            )));
        }
    }
    let body = match length {
        Some(n) if body.len() < n => {
            return Err(ReplicaError::Truncated {
                expected: n,
                got: body.len(),
            });
        }
        Some(n) => &body[..n],
        None => body,
    };
    Ok(Answer { status, body })
}

/// What an error answer says: its JSON `error` field, else its text; escaped and capped.
fn message(body: &[u8]) -> String {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    escape_untrusted(&text, 200)
}

/// The body of a 2xx answer; other statuses as errors (pure).
pub fn check_status(answer: Answer<'_>, token_sent: bool) -> Result<&[u8], ReplicaError> {
    match answer.status {
        200..=299 => Ok(answer.body),
        401 if token_sent => Err(ReplicaError::TokenRefused),
        401 => Err(ReplicaError::NoToken),
        404 => Err(ReplicaError::NotFound {
            message: message(answer.body),
        }),
        status => Err(ReplicaError::Status {
            status,
            message: message(answer.body),
        }),
    }
}

async fn exchange(
    target: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<Vec<u8>, ReplicaError> {
    let mut stream = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(ReplicaError::Connect)?;
    stream
        .write_all(request_head(target, method, path, token).as_bytes())
        .await
        .map_err(ReplicaError::Send)?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut raw)
        .await
        .map_err(ReplicaError::Receive)?;
    if raw.len() > MAX_RESPONSE {
        return Err(ReplicaError::TooLarge);
    }
    let body = check_status(parse_answer(&raw)?, token.is_some())?;
    Ok(body.to_vec())
}

/// `method path` on one replica, within `timeout` (connect, send and the whole answer); the
/// body of a 2xx answer.
pub async fn call(
    target: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Vec<u8>, ReplicaError> {
    tokio::time::timeout(timeout, exchange(target, method, path, token))
        .await
        .unwrap_or(Err(ReplicaError::Timeout(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_host_token_and_close() {
        let t = Target {
            replica: "[fd00::1]:9100".into(),
            host: "fd00::1".into(),
            port: 9100,
        };
        let head = request_head(&t, "POST", "/sessions/kill?key_id=a", Some("s3cret"));
        assert!(
            head.starts_with("POST /sessions/kill?key_id=a HTTP/1.1\r\nHost: [fd00::1]:9100\r\n")
        );
        assert!(head.contains("\r\nAuthorization: Bearer s3cret\r\n"));
        assert!(head.contains("\r\nConnection: close\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
        assert!(!request_head(&t, "GET", "/sessions", None).contains("Authorization"));
    }

    #[test]
    fn answers_are_parsed_strictly() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\nConnection: close\r\n\r\n{}\nextra";
        let a = parse_answer(ok).unwrap();
        assert_eq!(
            a,
            Answer {
                status: 200,
                body: b"{}\n"
            }
        );
        assert_eq!(check_status(a, false).unwrap(), b"{}\n");
        // Without Content-Length: to the end.
        assert_eq!(
            parse_answer(b"HTTP/1.0 200 OK\r\n\r\nabc").unwrap().body,
            b"abc"
        );
        for (raw, want) in [
            (&b"SSH-2.0-OpenSSH_9.2\r\n"[..], "not an HTTP answer"),
            (b"HTTP/1.1 2000 OK\r\n\r\n", "not an HTTP answer"),
            (b"HTTP/2 200\r\n\r\n", "not an HTTP answer"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                "cut short",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc",
                "chunked",
            ),
        ] {
            let e = parse_answer(raw).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        // A hostile status line is escaped in the error.
        let e = parse_answer(b"\x1b[31mEVIL\r\n\r\n")
            .unwrap_err()
            .to_string();
        assert!(!e.contains('\x1b') && e.contains("\\u{1b}"), "{e}");
    }

    #[test]
    fn statuses_become_errors_that_say_what_to_do() {
        let answer = |status, body| Answer { status, body };
        assert!(matches!(
            check_status(answer(401, b"unauthorized\n"), false),
            Err(ReplicaError::NoToken)
        ));
        assert!(matches!(
            check_status(answer(401, b""), true),
            Err(ReplicaError::TokenRefused)
        ));
        let e = check_status(
            answer(400, b"{\"error\":\"serial: \\\"x\\\" is not a number\"}\n"),
            false,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "HTTP 400: serial: \\\"x\\\" is not a number");
        let e = check_status(answer(404, b"{\"error\":\"no session 7\"}"), false).unwrap_err();
        assert!(matches!(e, ReplicaError::NotFound { .. }), "{e}");
        let e = check_status(answer(500, b"boom\x07\n"), false).unwrap_err();
        assert_eq!(e.to_string(), "HTTP 500: boom\\u{7}");
    }
}
