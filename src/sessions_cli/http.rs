//! One request to one replica's admin endpoint over the crate's hyper client
//! ([`crate::http_client`]): plain HTTP/1.1, one request per connection, the answer read to its
//! end (whatever its framing) under a size cap and the caller's timeout. Nothing the peer sends
//! is trusted: hyper checks the framing, the status and body are checked here, and peer text in
//! errors is escaped.

use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, AUTHORIZATION, CONNECTION, USER_AGENT};
use hyper::{Method, Request};

use super::targets::Target;
use crate::http_client::ExchangeError;
use crate::text::escape_untrusted;

/// The largest answer read (a list of some hundred thousand sessions).
pub(super) const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Why one replica gave no usable answer. Messages say what was expected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReplicaError {
    #[error("{reason}")]
    Resolve { reason: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The request could not be sent, or the answer was no well-formed HTTP/1.1.
    #[error("no usable HTTP answer: {0}")]
    Exchange(String),
    #[error("no answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("answer larger than {MAX_RESPONSE} bytes")]
    TooLarge,
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

/// An HTTP answer: status and whole body.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Answer<'a> {
    pub status: u16,
    pub body: &'a [u8],
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
pub(super) fn check_status(answer: Answer<'_>, token_sent: bool) -> Result<&[u8], ReplicaError> {
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
    timeout: Duration,
) -> Result<Vec<u8>, ReplicaError> {
    let url = format!("http://{}{path}", target.replica);
    let method =
        Method::from_bytes(method.as_bytes()).map_err(|e| ReplicaError::Exchange(e.to_string()))?;
    let mut request = Request::builder()
        .method(method)
        .uri(&url)
        .header(USER_AGENT, concat!("ssh-edge/", env!("CARGO_PKG_VERSION")))
        .header(ACCEPT, "application/json")
        .header(CONNECTION, "close");
    if let Some(token) = token {
        request = request.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| ReplicaError::Exchange(escape_untrusted(&e.to_string(), 200)))?;
    let client =
        crate::http_client::plain(timeout).map_err(|e| ReplicaError::Connect(e.to_string()))?;
    let (status, body) = crate::http_client::exchange(&client, request, MAX_RESPONSE)
        .await
        .map_err(|e| match e {
            ExchangeError::Connect(reason) => ReplicaError::Connect(reason),
            ExchangeError::Request(reason) | ExchangeError::Body(reason) => {
                ReplicaError::Exchange(reason)
            }
            ExchangeError::TooLarge => ReplicaError::TooLarge,
        })?;
    let body = check_status(
        Answer {
            status,
            body: &body,
        },
        token.is_some(),
    )?;
    Ok(body.to_vec())
}

/// `method path` on one replica, within `timeout` (connect, send and the whole answer); the
/// body of a 2xx answer.
pub(super) async fn call(
    target: &Target,
    method: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<Vec<u8>, ReplicaError> {
    tokio::time::timeout(timeout, exchange(target, method, path, token, timeout))
        .await
        .unwrap_or(Err(ReplicaError::Timeout(timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
