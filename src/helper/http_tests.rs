//! The helper's HTTP client against a real in-process hyper server: chunked and
//! Content-Length answers, errors, and base-URL checks.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::header::TRANSFER_ENCODING;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use super::*;

#[test]
fn parses_urls() {
    let ok = |url: &str, tls: bool, origin: &str| {
        let base = BaseUrl::parse(url).unwrap();
        assert_eq!(base.tls(), tls, "{url}");
        assert_eq!(base.join("/v1/x"), format!("{origin}/v1/x"), "{url}");
    };
    ok("https://api.example", true, "https://api.example");
    ok("http://127.0.0.1:8444/", false, "http://127.0.0.1:8444");
    ok("https://[::1]:8443", true, "https://[::1]:8443");
    for bad in [
        "ftp://x",
        "https://x/path",
        "https://x:notaport",
        "https://x:70000",
        "https://x:0",
        "https://x/#top",
        "https://x:",
        "https://x?q=1",
        "https://user@x",
        "api.example",
        "",
    ] {
        assert!(
            matches!(BaseUrl::parse(bad), Err(HttpError::BadUrl(u)) if u == bad),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn empty_bodies_are_null_and_garbage_is_refused() {
    assert_eq!(parse_json(b" \n").unwrap(), serde_json::Value::Null);
    assert_eq!(parse_json(b"{\"a\":1}").unwrap(), json!({"a": 1}));
    assert!(parse_json(b"not json").is_err());
}

/// Serves every connection on `listener` with `answer(request body)`, echoing what came in.
async fn serve<F>(listener: TcpListener, answer: F)
where
    F: Fn(String, Vec<u8>) -> Response<Chunks> + Clone + Send + Sync + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let answer = answer.clone();
                async move {
                    let auth = req
                        .headers()
                        .get(AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    Ok::<_, Infallible>(answer(auth, body.to_vec()))
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A body of several data frames of unknown total length.
pub(super) struct Chunks(VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

/// A response whose body is sent as `chunks`, one HTTP chunk each (`Transfer-Encoding:
/// chunked`, no Content-Length).
fn chunked(status: u16, chunks: &[&str]) -> Response<Chunks> {
    let frames = chunks.iter().map(|c| Bytes::from(c.to_string())).collect();
    let mut response = Response::new(Chunks(frames));
    *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
    response
        .headers_mut()
        .insert(TRANSFER_ENCODING, "chunked".parse().unwrap());
    response
}

async fn client_for(
    answer: impl Fn(String, Vec<u8>) -> Response<Chunks> + Clone + Send + Sync + 'static,
) -> ApiClient {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = BaseUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(serve(listener, answer));
    ApiClient::new(base, None).unwrap()
}

#[tokio::test]
async fn chunked_answers_are_read_whole() {
    let client = client_for(|auth, body| {
        let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let job = echoed["job_id"].as_str().unwrap_or("").to_string();
        let first = format!("{{\"auth\":\"{auth}\",");
        let second = format!("\"job\":\"{job}\",");
        // The answer arrives in pieces that are no JSON on their own.
        chunked(200, &[&first, &second, "\"n\":", "42}"])
    })
    .await;
    let (status, json) = tokio::time::timeout(
        Duration::from_secs(20),
        client.post_json(
            "/v1/training_jobs/search",
            "k-123",
            &json!({"job_id": "abc"}),
        ),
    )
    .await
    .expect("answer within 20 s")
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        json,
        json!({"auth": "Api-Key k-123", "job": "abc", "n": 42})
    );
}

#[tokio::test]
async fn refusals_oversize_and_garbage_are_told_apart() {
    let big = "x".repeat(MAX_RESPONSE + 1);
    let client = client_for(move |_, body| match body.as_slice() {
        b"\"refuse\"" => chunked(403, &["{\"error\":\"no\"}"]),
        b"\"big\"" => chunked(200, &["\"", &big, "\""]),
        _ => chunked(200, &["not json"]),
    })
    .await;
    let call = |what: &'static str| {
        let client = &client;
        async move {
            tokio::time::timeout(
                Duration::from_secs(20),
                client.post_json("/x", "k", &json!(what)),
            )
            .await
            .expect("answer within 20 s")
        }
    };
    let (status, json) = call("refuse").await.unwrap();
    assert_eq!((status, json["error"].as_str()), (403, Some("no")));
    match call("big").await {
        Err(HttpError::Malformed { reason, .. }) => assert!(reason.contains("larger"), "{reason}"),
        other => panic!("expected an oversize refusal, got {other:?}"),
    }
    match call("garbage").await {
        Err(HttpError::Malformed { reason, .. }) => assert_eq!(reason, "body is not JSON"),
        other => panic!("expected a JSON refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_api_names_the_url() {
    // A port just released: nothing listens there.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = ApiClient::new(BaseUrl::parse(&format!("http://{addr}")).unwrap(), None).unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        client.post_json("/x", "k", &json!({})),
    )
    .await
    .expect("answer within 20 s")
    .unwrap_err();
    match err {
        HttpError::Connect { url, .. } => assert_eq!(url, format!("http://{addr}/x")),
        other => panic!("expected Connect, got {other:?}"),
    }
}
