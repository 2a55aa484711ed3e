//! `ssh-edge issuer`: the signing API the installed helpers call. The issuer runs in-process on a
//! loopback port with the lab's CAs and token keys; the stdlib-Python helper signs like the
//! installed one (urllib, `Authorization: Api-Key`), then connects through front B with the
//! token, and the real `ssh` logs into the lab's sshd with the issued certificate.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use crate::world::*;

pub(crate) const KEY_DEFAULT: &str = "default-secret-api-key";
const KEY_B: &str = "tenant-b-secret-api-key";

fn helper_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/vendor_helper.py")
}

/// A running issuer for a world's lab.
pub(crate) struct Issuer {
    pub(crate) port: u16,
    _runtime: tokio::runtime::Runtime,
}

pub(crate) fn start_issuer(w: &World) -> Issuer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    start_issuer_on(
        w,
        listener,
        None,
        r#"{ job_id = "abc1234", project_id = "p1" }"#,
        false,
    )
}

/// An issuer on `listener` (bound before the edge that calls it was configured), with `extra`
/// top-level TOML (e.g. `[control_plane]`) and the default tenant's `training_jobs` entries.
pub(crate) fn start_issuer_on(
    w: &World,
    listener: std::net::TcpListener,
    control_plane: Option<(&str, &str)>,
    default_jobs: &str,
    https: bool,
) -> Issuer {
    let path = w
        .lab
        .write_issuer_config(&ssh_edge::lab::IssuerLab {
            proxy_address: format!("localhost:{}", w.tls_port),
            api_keys: [KEY_DEFAULT, KEY_B],
            control_plane,
            default_jobs,
            https,
        })
        .unwrap();
    let config = ssh_edge::issuer::load(&path).expect("issuer config is valid");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = runtime.block_on(async {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(ssh_edge::issuer::serve(config, listener));
        port
    });
    Issuer {
        port,
        _runtime: runtime,
    }
}

/// A fresh ed25519 key from ssh-keygen, without a certificate.
pub(crate) fn new_key(w: &World, name: &str) -> PathBuf {
    let key = w.lab.path(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status_bounded();
    assert!(status.success());
    key
}

pub(crate) fn helper_args(w: &World, issuer: &Issuer, api_key: &str, key: &Path) -> Vec<String> {
    vec![
        "--api".into(),
        format!("http://127.0.0.1:{}", issuer.port),
        "--api-key".into(),
        api_key.into(),
        "--public-key".into(),
        format!("{}.pub", key.display()),
        "--cafile".into(),
        w.lab.path("tls-ca.pem").display().to_string(),
    ]
}

/// `python3 vendor_helper.py --api … --sign-only --workload host`.
fn sign_only(w: &World, issuer: &Issuer, api_key: &str, key: &Path, host: &str) -> Output {
    run_with_timeout(
        Command::new("python3")
            .arg(helper_script())
            .args(helper_args(w, issuer, api_key, key))
            .args(["--sign-only", "--workload", host]),
        Duration::from_secs(30),
    )
}

/// `ssh host command` with the signing helper as ProxyCommand (as the vendor CLI sets it up).
pub(crate) fn ssh_via_issuer(
    w: &World,
    issuer: &Issuer,
    api_key: &str,
    key: &Path,
    host: &str,
    command: &str,
) -> Output {
    let proxy = format!(
        "python3 {} {} --workload %h",
        helper_script().display(),
        helper_args(w, issuer, api_key, key).join(" ")
    );
    let mut args = w.passthrough_ssh_args(&proxy, key);
    args.extend([host.to_string(), command.to_string()]);
    run_with_timeout(Command::new("ssh").args(&args), Duration::from_secs(60))
}

fn cert_line(key: &Path) -> String {
    std::fs::read_to_string(format!("{}-cert.pub", key.display())).unwrap()
}

/// `ssh-keygen -L` of the certificate beside `key`.
fn describe_cert(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(format!("{}-cert.pub", key.display()))
        .output_bounded();
    stdout(&out)
}

#[test]
fn issued_certificate_and_token_land_in_a_shell_through_front_b() {
    let w = World::start();
    let issuer = start_issuer(&w);

    // Training job: search + sign, certificate beside the key.
    let key = new_key(&w, "issuer_user");
    let host = "training-job-abc1234-0.ssh.baseten.co";
    let out = sign_only(&w, &issuer, KEY_DEFAULT, &key, host);
    assert!(out.status.success(), "sign: {}", stderr(&out));
    let described = describe_cert(&key);
    assert!(
        described.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{described}"
    );
    assert!(
        described.contains(&format!(
            "Key ID: \"tenant=default api_key=ci-key workload={host}\""
        )),
        "{described}"
    );
    assert!(
        described.contains("                abc1234\n"),
        "{described}"
    );
    assert!(described.contains("permit-user-rc"), "{described}");

    // The ProxyCommand signs again (a fresh token and certificate) and connects with the token.
    let before = cert_line(&key);
    let out = ssh_via_issuer(&w, &issuer, KEY_DEFAULT, &key, host, "echo ok");
    assert_eq!(stdout(&out), "ok\n", "ssh: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    assert_ne!(
        cert_line(&key),
        before,
        "the helper rewrote the certificate"
    );
    // And again, now surely with the certificate the ProxyCommand itself wrote.
    let out = ssh_via_issuer(&w, &issuer, KEY_DEFAULT, &key, host, "echo again");
    assert_eq!(stdout(&out), "again\n", "ssh: {}", stderr(&out));

    // Model, with and without a replica.
    let model_key = new_key(&w, "issuer_model_user");
    for host in [
        "model-m1x2y3-d1-2.ssh.baseten.co",
        "model-m1x2y3-d1.ssh.baseten.co",
    ] {
        let out = sign_only(&w, &issuer, KEY_DEFAULT, &model_key, host);
        assert!(out.status.success(), "{host}: sign: {}", stderr(&out));
        assert!(describe_cert(&model_key).contains("                m1x2y3\n"));
        let out = ssh_via_issuer(&w, &issuer, KEY_DEFAULT, &model_key, host, "echo model-ok");
        assert_eq!(stdout(&out), "model-ok\n", "{host}: ssh: {}", stderr(&out));
    }
    assert!(w.metric("ssh_edge_logins_total{front=\"token\"}") >= 4);

    // Tenant-b's token (kid, `.tenant-b.` host) is accepted by the edge; the lab's sshd does
    // not trust tenant-b's CA, so the login itself is refused by the backend, not the edge.
    let b_key = new_key(&w, "issuer_b_user");
    let host = "training-job-other99-1.tenant-b.ssh.baseten.co";
    let out = sign_only(&w, &issuer, KEY_B, &b_key, host);
    assert!(out.status.success(), "tenant-b sign: {}", stderr(&out));
    let logins = w.metric("ssh_edge_logins_total{front=\"token\"}");
    let out = ssh_via_issuer(&w, &issuer, KEY_B, &b_key, host, "true");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        !stderr(&out).contains("SSH proxy rejected"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(w.metric("ssh_edge_logins_total{front=\"token\"}") > logins);
}

/// One HTTP/1.1 request on a fresh connection; returns status and JSON body.
fn http(port: u16, method: &str, path: &str, api_key: Option<&str>, body: &str) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = api_key.map_or(String::new(), |k| format!("Authorization: Api-Key {k}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: issuer\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn error_of(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}

#[test]
fn signing_api_refusals() {
    let w = World::start();
    let issuer = start_issuer(&w);
    let port = issuer.port;
    let public_key = std::fs::read_to_string(w.lab.path("user_key.pub")).unwrap();
    let sign_body = json!({"public_key": public_key, "replica_id": "0"}).to_string();
    let search = |key: Option<&str>, job: &str| {
        http(
            port,
            "POST",
            "/v1/training_jobs/search",
            key,
            &json!({"job_id": job}).to_string(),
        )
    };
    let sign_job = |key: &str, project: &str, job: &str, body: &str| {
        http(
            port,
            "POST",
            &format!("/v1/training_projects/{project}/jobs/{job}/ssh/sign"),
            Some(key),
            body,
        )
    };

    // Happy path for reference.
    let (status, v) = search(Some(KEY_DEFAULT), "abc1234");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["training_jobs"][0]["training_project"]["id"], "p1");
    let (status, v) = sign_job(KEY_DEFAULT, "p1", "abc1234", &sign_body);
    assert_eq!(status, 200, "{v}");
    assert!(
        v["ssh_certificate"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519-cert-v01@openssh.com ")
    );
    assert_eq!(v["proxy_address"], format!("localhost:{}", w.tls_port));
    assert_eq!(v["jwt"].as_str().unwrap().split('.').count(), 3);
    assert!(v["ssh_cert_expires_at"].as_str().unwrap().ends_with('Z'));

    // API keys.
    let (status, v) = search(Some("wrong-key"), "abc1234");
    assert_eq!((status, error_of(&v)), (401, "invalid API key"));
    let (status, v) = search(None, "abc1234");
    assert_eq!(status, 401, "{v}");
    assert!(error_of(&v).contains("Api-Key"), "{v}");

    // Another tenant's job looks exactly like an unknown one, on search and sign.
    let (status, v) = search(Some(KEY_B), "other99");
    assert_eq!(status, 200, "tenant-b owns other99: {v}");
    let (status, foreign) = search(Some(KEY_DEFAULT), "other99");
    assert_eq!(
        (status, error_of(&foreign)),
        (404, "training job other99 not found")
    );
    let (status, unknown) = search(Some(KEY_DEFAULT), "zzz999");
    assert_eq!(
        (status, error_of(&unknown)),
        (404, "training job zzz999 not found")
    );
    let (status, v) = sign_job(KEY_DEFAULT, "p9", "other99", &sign_body);
    assert_eq!(status, 404, "{v}");
    assert_eq!(
        error_of(&v),
        "training job other99 not found in training project p9"
    );
    let (status, v) = sign_job(KEY_DEFAULT, "p2", "abc1234", &sign_body);
    assert_eq!(status, 404, "wrong project: {v}");
    let (status, v) = http(
        port,
        "POST",
        "/v1/models/m1x2y3/deployments/d9/ssh/sign",
        Some(KEY_DEFAULT),
        &sign_body,
    );
    assert_eq!(status, 404, "unknown deployment: {v}");

    // Malformed ids and keys.
    let (status, v) = search(Some(KEY_DEFAULT), "ABC_123");
    assert_eq!(
        (status, error_of(&v)),
        (400, "Invalid job id: must be a valid hash id")
    );
    let (status, v) = sign_job(KEY_DEFAULT, "p1", "abc%2F1", &sign_body);
    assert_eq!(
        (status, error_of(&v)),
        (400, "Invalid job id: must be a valid hash id")
    );
    let bad_key = json!({"public_key": "ssh-ed25519 not-base64", "replica_id": "0"}).to_string();
    let (status, v) = sign_job(KEY_DEFAULT, "p1", "abc1234", &bad_key);
    assert_eq!(status, 400, "{v}");
    assert!(
        error_of(&v).starts_with("public_key is not an OpenSSH public key"),
        "{v}"
    );
    let (status, v) = sign_job(KEY_DEFAULT, "p1", "abc1234", "{not json");
    assert_eq!(status, 400, "{v}");

    // Paths, methods, sizes.
    let (status, _) = http(port, "POST", "/v1/elsewhere", Some(KEY_DEFAULT), "{}");
    assert_eq!(status, 404);
    let (status, _) = http(
        port,
        "GET",
        "/v1/training_jobs/search",
        Some(KEY_DEFAULT),
        "",
    );
    assert_eq!(status, 405);
    let huge = format!("{{\"job_id\": \"{}\"}}", "a".repeat(70 * 1024));
    let (status, _) = http(
        port,
        "POST",
        "/v1/training_jobs/search",
        Some(KEY_DEFAULT),
        &huge,
    );
    assert_eq!(status, 413);

    // The helper reports API errors and exits 1 without connecting.
    let key = new_key(&w, "refused_user");
    let out = sign_only(
        &w,
        &issuer,
        "wrong-key",
        &key,
        "training-job-abc1234-0.ssh.baseten.co",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("signing API error 401: invalid API key"),
        "{}",
        stderr(&out)
    );
    let out = sign_only(
        &w,
        &issuer,
        KEY_DEFAULT,
        &key,
        "training-job-other99-0.ssh.baseten.co",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("signing API error 404"),
        "{}",
        stderr(&out)
    );
}
