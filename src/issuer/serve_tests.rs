//! The control plane over real HTTP: the issuer served on a loopback port from a TOML config,
//! driven with raw HTTP/1.1 requests. Every wait is bounded and fails the test on timeout.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::upstream::random_ed25519_key;

const EDGE: &str = "edge-secret-token";
const ADMIN: &str = "admin-secret-token";
const API_KEY: &str = "api-secret-key";
const WAIT: Duration = Duration::from_secs(10);

fn sha256_hex(s: &str) -> String {
    hex::encode(super::api::digest_api_key(s))
}

/// Serves the issuer for `extra` (control plane and workloads of tenant `default`) on a loopback
/// port; returns the port.
async fn start(dir: &Path, extra: &str) -> u16 {
    let ca = dir.join("user_ca");
    random_ed25519_key()
        .write_openssh_file(&ca, russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    let token_key = dir.join("token.p8");
    let der = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .unwrap()
        .to_pkcs8v1()
        .unwrap();
    std::fs::write(&token_key, der.as_ref()).unwrap();
    let config = format!(
        r#"
listen = "127.0.0.1:0"
proxy_address = "edge.test:443"
suffix = "ssh.test"

[[tenants]]
name = "default"
api_keys = [{{ id = "k", sha256 = "{key}" }}]
user_ca_key_file = "{ca}"
token_key_file = "{tk}"
token_kid = "kid1"
{extra}
"#,
        key = sha256_hex(API_KEY),
        ca = ca.display(),
        tk = token_key.display(),
    );
    let path = dir.join("issuer.toml");
    std::fs::write(&path, config).unwrap();
    let config = super::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(super::serve(config, listener));
    port
}

struct Reply {
    status: u16,
    head: String,
    body: Value,
}

/// One HTTP/1.1 request (`Connection: close`), bounded by [`WAIT`].
async fn call(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> Reply {
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: issuer\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(WAIT, exchange)
        .await
        .expect("issuer answered in time");
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
    };
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body,
    }
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

async fn admin_get(port: u16, host: &str) -> Value {
    let r = call(
        port,
        "GET",
        &format!("/v1/admin/workloads/{host}"),
        bearer(ADMIN).as_deref(),
        "",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body
}

/// Polls the admin status of `host` until its state is `state`; fails after [`WAIT`].
async fn wait_for_state(port: u16, host: &str, state: &str) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let status = admin_get(port, host).await;
        if status["state"] == state {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{host} never reached {state}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn activate(port: u16, host: &str) -> Reply {
    let path = format!("/v1/edge/workloads/{host}/activate");
    call(port, "POST", &path, bearer(EDGE).as_deref(), "{}").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let woke = dir.path().join("woke");
    let model_woke = dir.path().join("model-woke");
    let extra = format!(
        r#"
[[tenants.training_jobs]]
job_id = "wake1"
project_id = "p1"
trigger = "on_demand"
on_activate = "sleep 0.3; touch {woke}"

[[tenants.training_jobs]]
job_id = "fail1"
project_id = "p1"
trigger = "on_demand"
on_activate = "exit 3"

[[tenants.training_jobs]]
job_id = "hold1"
project_id = "p1"
trigger = "on_failure"

[[tenants.models]]
model_id = "m1"
deployments = ["d1"]
trigger = "on_demand"
on_activate = 'test "$SSH_EDGE_WORKLOAD $SSH_EDGE_TENANT $SSH_EDGE_WORKLOAD_HOST" = "m1-d1 default model-m1-d1-0.ssh.test" && touch {model_woke}'

[control_plane]
edge_token_sha256 = "{edge}"
admin_token_sha256 = "{admin}"
"#,
        woke = woke.display(),
        model_woke = model_woke.display(),
        edge = sha256_hex(EDGE),
        admin = sha256_hex(ADMIN),
    );
    let port = start(dir.path(), &extra).await;
    let wake = "training-job-wake1-0.ssh.test";
    let status_path = format!("/v1/edge/workloads/{wake}");

    // Status needs the edge token (not the admin one, not none).
    for auth in [None, bearer("wrong"), bearer(ADMIN)] {
        let r = call(port, "GET", &status_path, auth.as_deref(), "").await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert!(r.head.contains("www-authenticate: bearer"), "{}", r.head);
        assert!(r.body["error"].is_string());
    }
    let r = call(port, "GET", &status_path, bearer(EDGE).as_deref(), "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"state": "activatable", "session_expires_at": null,
            "message": "training job wake1 is asleep (on-demand session); connecting wakes it"})
    );
    let r = call(
        port,
        "GET",
        &format!("{status_path}/activate"),
        bearer(EDGE).as_deref(),
        "",
    )
    .await;
    assert_eq!(r.status, 405);
    assert!(r.head.contains("allow: post"), "{}", r.head);

    // Five activations at once (different nodes of one job): one run, answered 202 + starting.
    let mut calls = tokio::task::JoinSet::new();
    for node in 0..5 {
        calls.spawn(
            async move { activate(port, &format!("training-job-wake1-{node}.ssh.test")).await },
        );
    }
    let mut replies = Vec::new();
    while let Some(r) = calls.join_next().await {
        replies.push(r.unwrap());
    }
    let started: Vec<&Reply> = replies.iter().filter(|r| r.status == 202).collect();
    assert_eq!(
        started.len(),
        1,
        "{:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(started[0].body["state"], "starting");
    for r in &replies {
        assert!(r.status == 202 || r.status == 200, "{}", r.status);
        let state = r.body["state"].as_str().unwrap();
        assert!(state == "starting" || state == "running", "{}", r.body);
    }
    let running = wait_for_state(port, wake, "running").await;
    assert_eq!(running["activations"], 1);
    assert_eq!(running["message"], Value::Null);
    assert!(woke.exists(), "on_activate did not run");
    // Running: a further activate answers 200 and starts nothing.
    let r = activate(port, wake).await;
    assert_eq!((r.status, r.body["state"].as_str()), (200, Some("running")));
    assert_eq!(admin_get(port, wake).await["activations"], 1);

    // A failing command returns the workload to activatable and says why.
    let fail = "training-job-fail1-0.ssh.test";
    assert_eq!(activate(port, fail).await.status, 202);
    let failed = wait_for_state(port, fail, "activatable").await;
    assert_eq!(failed["activations"], 1);
    let m = failed["message"].as_str().unwrap();
    assert!(
        m.ends_with("(last activation failed: exit status 3)"),
        "{m}"
    );

    // Stopped and unknown: 409 with the status body.
    let r = activate(port, "training-job-hold1-0.ssh.test").await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.body,
        json!({"state": "stopped", "session_expires_at": null,
            "message": "training job hold1: the SSH session opens only if training fails (trigger on_failure)"})
    );
    let r = activate(port, "training-job-nope1-0.ssh.test").await;
    assert_eq!(r.status, 409);
    assert_eq!(r.body["state"], "unknown");
    assert_eq!(
        r.body["message"],
        "no workload named training-job-nope1-0.ssh.test"
    );

    // Admin routes: admin token only; state + message; expiry; unknown hosts are 404.
    let hold = "training-job-hold1-0.ssh.test";
    let admin = |path: &str| format!("/v1/admin/workloads/{hold}/{path}");
    let r = call(
        port,
        "POST",
        &admin("state"),
        bearer(EDGE).as_deref(),
        r#"{"state":"running"}"#,
    )
    .await;
    assert_eq!(r.status, 401);
    let body = r#"{"state":"stopped","message":"maintenance until 5pm"}"#;
    let r = call(
        port,
        "POST",
        &admin("state"),
        bearer(ADMIN).as_deref(),
        body,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"state": "stopped", "session_expires_at": null, "message": "maintenance until 5pm", "activations": 0, "activate_requests": 1})
    );
    let r = call(
        port,
        "POST",
        &admin("state"),
        bearer(ADMIN).as_deref(),
        r#"{"state":"asleep"}"#,
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let body = r#"{"session_expires_at": 2000000000}"#;
    let r = call(
        port,
        "POST",
        &admin("expiry"),
        bearer(ADMIN).as_deref(),
        body,
    )
    .await;
    assert_eq!(
        (r.status, &r.body["session_expires_at"]),
        (200, &json!(2_000_000_000u64))
    );
    let r = call(
        port,
        "POST",
        &admin("expiry"),
        bearer(ADMIN).as_deref(),
        r#"{"extend_secs": 60}"#,
    )
    .await;
    assert_eq!(r.body["session_expires_at"], 2_000_000_060u64);
    let edge_view = call(
        port,
        "GET",
        &format!("/v1/edge/workloads/{hold}"),
        bearer(EDGE).as_deref(),
        "",
    )
    .await;
    assert_eq!(edge_view.body["session_expires_at"], 2_000_000_060u64);
    for (path, body) in [
        ("state", r#"{"state":"running"}"#),
        ("expiry", r#"{"session_expires_at":null}"#),
    ] {
        let path = format!("/v1/admin/workloads/training-job-nope1-0.ssh.test/{path}");
        let r = call(port, "POST", &path, bearer(ADMIN).as_deref(), body).await;
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    let r = call(
        port,
        "GET",
        "/v1/admin/workloads/nope.ssh.test",
        bearer(ADMIN).as_deref(),
        "",
    )
    .await;
    assert_eq!(r.status, 404);
    let r = call(
        port,
        "POST",
        "/v1/admin/workloads/nope.ssh.test/state",
        bearer(ADMIN).as_deref(),
        r#"{"state":"running"}"#,
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"].as_str()),
        (404, Some("no workload named nope.ssh.test"))
    );

    // A sign wakes an asleep on-demand model deployment.
    let model = "model-m1-d1-0.ssh.test";
    assert_eq!(admin_get(port, model).await["state"], "activatable");
    let key = random_ed25519_key().public_key().to_openssh().unwrap();
    let body = json!({"public_key": key, "replica_id": "0"}).to_string();
    let api_key = format!("Api-Key {API_KEY}");
    let r = call(
        port,
        "POST",
        "/v1/models/m1/deployments/d1/ssh/sign",
        Some(&api_key),
        &body,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let running = wait_for_state(port, model, "running").await;
    assert_eq!(running["activations"], 1);
    assert!(model_woke.exists(), "on_activate saw the wrong environment");
}

#[tokio::test]
async fn control_plane_off_without_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let port = start(dir.path(), "").await;
    for (path, setting) in [
        ("/v1/edge/workloads/x.ssh.test", "edge_token_sha256"),
        ("/v1/admin/workloads/x.ssh.test", "admin_token_sha256"),
    ] {
        let r = call(port, "GET", path, bearer("anything").as_deref(), "").await;
        assert_eq!(r.status, 404);
        assert_eq!(
            r.body["error"],
            format!("control plane not enabled: set control_plane.{setting}")
        );
    }
    // The Api-Key API is unchanged.
    let r = call(port, "POST", "/v1/training_jobs/search", None, "{}").await;
    assert_eq!(r.status, 401);
    assert!(r.head.contains("www-authenticate: api-key"), "{}", r.head);
}
