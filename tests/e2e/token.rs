//! Front B: the token preamble spoken by the installed helpers, then raw SSH passthrough.
//! Driven by a standard-library Python client that behaves like the real helper (recv(1) for the
//! status byte, then a selectors loop with 64 KiB reads), and by a Rust TLS client for the
//! malformed preambles no helper would send.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::world::*;

fn helper_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/helpers/vendor_helper.py")
}

/// ssh arguments reaching the backend through front B with a token of its own (tokens are
/// single use), the way the vendor CLI configures it: ProxyCommand = helper, the backend's own
/// host key, the user's certificate.
fn passthrough_args(w: &World, proxy_host: &str) -> Vec<String> {
    let token = fresh_token(w);
    let token_file = w.lab.path(&format!("token-{}", rand_suffix()));
    std::fs::write(&token_file, token).unwrap();
    let proxy = format!(
        "python3 {} --proxy {proxy_host}:{} --token-file {} --cafile {}",
        helper_script().display(),
        w.tls_port,
        token_file.display(),
        w.lab.path("tls-ca.pem").display()
    );
    w.passthrough_ssh_args(&proxy, &w.user_key)
}

fn fresh_token(w: &World) -> String {
    w.lab
        .mint_token("default", HOST, Duration::from_secs(600))
        .unwrap()
}

fn rand_suffix() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn installed_helper_protocol_runs_ssh_scp_and_sftp_in_passthrough() {
    let w = World::start();
    // SNI = the edge's name (localhost here) and, for an IP proxy address, no SNI at all.
    for proxy_host in ["localhost", "127.0.0.1"] {
        let mut args = passthrough_args(&w, proxy_host);
        args.extend([
            HOST.to_string(),
            "echo passthrough-ok; echo err >&2; exit 5".to_string(),
        ]);
        let out = run_with_timeout(Command::new("ssh").args(&args), Duration::from_secs(60));
        assert_eq!(out.status.code(), Some(5), "{proxy_host}: {}", stderr(&out));
        assert_eq!(stdout(&out), "passthrough-ok\n", "{proxy_host}");
        assert!(stderr(&out).contains("err"));
    }

    // Our own helper speaks the same protocol: `ssh-edge connect --token-file`.
    let token_file = w.lab.path("connect-token");
    std::fs::write(&token_file, fresh_token(&w)).unwrap();
    let proxy = format!(
        "{} connect --edge localhost:{} --ca-file {} --token-file {} %h",
        env!("CARGO_BIN_EXE_ssh-edge"),
        w.tls_port,
        w.lab.path("tls-ca.pem").display(),
        token_file.display()
    );
    let mut args = w.passthrough_ssh_args(&proxy, &w.user_key);
    args.extend([HOST.to_string(), "echo via-connect".to_string()]);
    let out = run_with_timeout(Command::new("ssh").args(&args), Duration::from_secs(60));
    assert_eq!(stdout(&out), "via-connect\n", "{}", stderr(&out));

    // scp of 50 MiB both ways, checked by sha256.
    let src = w.lab.path("pt-up.bin");
    let data: Vec<u8> = (0..50u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let remote = w.lab.path("pt-remote.bin");
    let back = w.lab.path("pt-back.bin");
    let out = run_with_timeout(
        Command::new("scp")
            .args(passthrough_args(&w, "localhost"))
            .arg(&src)
            .arg(format!("{HOST}:{}", remote.display())),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "scp up: {}", stderr(&out));
    let out = run_with_timeout(
        Command::new("scp")
            .args(passthrough_args(&w, "localhost"))
            .arg(format!("{HOST}:{}", remote.display()))
            .arg(&back),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "scp down: {}", stderr(&out));
    assert!(
        std::fs::read(&remote).unwrap() == data,
        "uploaded file differs"
    );
    assert!(
        std::fs::read(&back).unwrap() == data,
        "downloaded file differs"
    );

    // sftp put/get.
    let batch = w.lab.path("pt-batch");
    let got = w.lab.path("pt-sftp-back.bin");
    std::fs::write(
        &batch,
        format!(
            "put {} {r}.sftp\nget {r}.sftp {}\n",
            src.display(),
            got.display(),
            r = remote.display()
        ),
    )
    .unwrap();
    let out = run_with_timeout(
        Command::new("sftp")
            .args(passthrough_args(&w, "localhost"))
            .arg("-b")
            .arg(&batch)
            .arg(HOST),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "sftp: {}", stderr(&out));
    assert!(
        std::fs::read(&got).unwrap() == data,
        "sftp round trip differs"
    );

    assert!(w.metric("ssh_edge_logins_total{front=\"token\"}") >= 5);
    assert!(w.metric("ssh_edge_splice_bytes_total{direction=\"up\"}") >= 100 << 20);
}

#[test]
fn the_helper_reports_a_rejected_token_and_exits_1() {
    let w = World::start();
    let token = w
        .lab
        .mint_token("tenant-b", HOST, Duration::from_secs(600))
        .unwrap();
    let token_file = w.lab.path("foreign-token");
    std::fs::write(&token_file, &token).unwrap();
    let out = run_with_timeout(
        Command::new("python3")
            .arg(helper_script())
            .args([
                "--proxy",
                &format!("localhost:{}", w.tls_port),
                "--token-file",
            ])
            .arg(&token_file)
            .arg("--cafile")
            .arg(w.lab.path("tls-ca.pem")),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("SSH proxy rejected the connection"),
        "{}",
        stderr(&out)
    );
    w.wait_metric(
        "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"foreign_workload\"}",
        1,
    );
}

/// Sends `bytes` after a TLS handshake (SNI localhost) and returns the first byte the edge
/// answers, or None if it closed without answering.
fn status_for(w: &World, bytes: Vec<u8>) -> Option<u8> {
    let ca = std::fs::read(w.lab.path("tls-ca.pem")).unwrap();
    let port = w.tls_port;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&ca) {
            roots.add(c.unwrap()).unwrap();
        }
        let config = ssh_edge::tls::client_config(roots).unwrap();
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        tls.write_all(&bytes).await.unwrap();
        tls.flush().await.unwrap();
        // The connection stays open: a short preamble must be ended by the edge's timer.
        let mut b = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(30), tls.read(&mut b)).await {
            Ok(Ok(1)) => Some(b[0]),
            _ => None,
        }
    })
}

fn framed(token: &[u8]) -> Vec<u8> {
    let mut v = (token.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(token);
    v
}

fn unsigned(header: &str, claims: &serde_json::Value) -> String {
    format!("{}.{}", B64.encode(header), B64.encode(claims.to_string()))
}

#[test]
fn bad_preambles_get_status_1_and_a_counted_reason() {
    let w = World::start_with(|raw| raw.token.preamble_timeout_secs = 1);
    let now = ssh_edge::time::unix_now();
    let claims = |host: &str, iat: u64, exp: u64| serde_json::json!({"iss": "ssh-edge", "aud": "ssh-edge", "sub": "u", "jti": "j", "host": host, "iat": iat, "exp": exp});
    let good = w
        .lab
        .mint_token("default", HOST, Duration::from_secs(600))
        .unwrap();
    // Sanity: the good token is accepted (status 0) by the same client.
    assert_eq!(status_for(&w, framed(good.as_bytes())), Some(0));

    let mut bad_sig = good.clone().into_bytes();
    let last = bad_sig.len() - 2;
    bad_sig[last] = if bad_sig[last] == b'A' { b'B' } else { b'A' };

    let pem = std::fs::read_to_string(w.lab.path("token_default.pem")).unwrap();
    let hs256 = {
        let signing_input = unsigned(
            r#"{"alg":"HS256","typ":"JWT","kid":"lab-default-1"}"#,
            &claims(HOST, now, now + 600),
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, pem.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(tag.as_ref()))
    };
    let none = format!(
        "{}.",
        unsigned(
            r#"{"alg":"none","kid":"lab-default-1"}"#,
            &claims(HOST, now, now + 600)
        )
    );
    let expired = sign_with(
        &w,
        "default",
        "lab-default-1",
        &claims(HOST, now - 7200, now - 3600),
    );
    let future = sign_with(
        &w,
        "default",
        "lab-default-1",
        &claims(HOST, now + 3600, now + 7200),
    );
    let wrong_aud = sign_with(
        &w,
        "default",
        "lab-default-1",
        &serde_json::json!({"iss": "ssh-edge", "aud": "someone-else", "sub": "u", "jti": "j", "host": HOST, "iat": now, "exp": now + 600}),
    );
    let unknown_kid = sign_with(&w, "default", "no-such-kid", &claims(HOST, now, now + 600));
    let foreign = w
        .lab
        .mint_token("tenant-b", HOST, Duration::from_secs(600))
        .unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad signature", framed(&bad_sig), "bad_signature"),
        ("unknown kid", framed(unknown_kid.as_bytes()), "unknown_kid"),
        ("alg none", framed(none.as_bytes()), "alg_none"),
        (
            "HS256 with the public key",
            framed(hs256.as_bytes()),
            "alg_not_allowed",
        ),
        ("expired", framed(expired.as_bytes()), "expired"),
        ("not yet valid", framed(future.as_bytes()), "not_yet_valid"),
        ("wrong aud", framed(wrong_aud.as_bytes()), "wrong_audience"),
        (
            "another tenant's workload",
            framed(foreign.as_bytes()),
            "foreign_workload",
        ),
        ("length 0", vec![0, 0, 0, 0], "bad_length"),
        (
            "length over the limit",
            (16 * 1024 + 1u32).to_be_bytes().to_vec(),
            "bad_length",
        ),
        (
            "truncated preamble",
            vec![0, 0, 1, 0, b'e', b'y'],
            "preamble_timeout",
        ),
        (
            "no bytes after the length byte",
            vec![0],
            "preamble_timeout",
        ),
    ];
    for (name, bytes, reason) in cases {
        let series =
            format!("ssh_edge_connections_rejected_total{{listener=\"tls\",reason=\"{reason}\"}}");
        // Every token refusal series exists from the start (at 0).
        let before = w.metric(&series);
        assert_eq!(
            status_for(&w, bytes),
            Some(1),
            "{name}: expected status 0x01"
        );
        w.wait_metric(&series, before + 1);
    }
}

#[test]
fn a_token_opens_one_connection_and_its_replay_is_refused_and_counted() {
    let w = World::start();
    let replayed = "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"replayed\"}";
    let token = fresh_token(&w);
    assert_eq!(status_for(&w, framed(token.as_bytes())), Some(0));
    // A fresh edge has refused nothing yet (the series exists at 0 from the start).
    assert_eq!(w.metric(replayed), 0);
    assert_eq!(
        status_for(&w, framed(token.as_bytes())),
        Some(1),
        "the same token was accepted twice"
    );
    w.wait_metric(replayed, 1);
    // Another token for the same workload and subject is its own first use.
    assert_eq!(status_for(&w, framed(fresh_token(&w).as_bytes())), Some(0));
    assert_eq!(w.metric(replayed), 1);
}

#[test]
fn tokens_longer_lived_than_the_issuer_mints_are_refused_by_default() {
    let w = World::start();
    let cap = ssh_edge::auth::token::DEFAULT_TOKEN_LIFETIME_SECS;
    let lifetime_too_long =
        "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"lifetime_too_long\"}";
    let at_cap = w
        .lab
        .mint_token("default", HOST, Duration::from_secs(cap))
        .unwrap();
    assert_eq!(status_for(&w, framed(at_cap.as_bytes())), Some(0));
    let longer = w
        .lab
        .mint_token("default", HOST, Duration::from_secs(cap + 1))
        .unwrap();
    assert_eq!(status_for(&w, framed(longer.as_bytes())), Some(1));
    w.wait_metric(lifetime_too_long, 1);
}

fn sign_with(w: &World, remote: &str, kid: &str, claims: &serde_json::Value) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let der = std::fs::read(w.lab.path(&format!("token_{remote}.p8"))).unwrap();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    ssh_edge::auth::token::sign_token(&key, kid, claims).unwrap()
}

#[test]
fn the_helpers_insecure_switch_speaks_the_preamble_on_plain_tcp() {
    let w = World::start_with(|raw| raw.listen.token_plain = Some("127.0.0.1:0".into()));
    let token = w
        .lab
        .mint_token("default", HOST, Duration::from_secs(600))
        .unwrap();
    let token_file = w.lab.path("plain-token");
    std::fs::write(&token_file, &token).unwrap();
    let proxy = format!(
        "python3 {} --insecure --proxy 127.0.0.1:{} --token-file {}",
        helper_script().display(),
        w.token_plain_port,
        token_file.display()
    );
    let mut args = w.passthrough_ssh_args(&proxy, &w.user_key);
    args.extend([HOST.to_string(), "echo plain-tcp-ok".to_string()]);
    let out = run_with_timeout(Command::new("ssh").args(&args), Duration::from_secs(60));
    assert_eq!(stdout(&out), "plain-tcp-ok\n", "{}", stderr(&out));
    assert!(w.metric("ssh_edge_connections_total{listener=\"token_plain\"}") >= 1);
}

/// `ssh … 'sleep 60; echo finished'` through front B (`ssh-edge connect --token-file`), left
/// running.
fn long_passthrough_session(w: &World) -> std::process::Child {
    let token = w
        .lab
        .mint_token("default", HOST, Duration::from_secs(600))
        .unwrap();
    let token_file = w.lab.path("long-token");
    std::fs::write(&token_file, &token).unwrap();
    let proxy = format!(
        "{} connect --edge localhost:{} --ca-file {} --token-file {} %h",
        env!("CARGO_BIN_EXE_ssh-edge"),
        w.tls_port,
        w.lab.path("tls-ca.pem").display(),
        token_file.display()
    );
    let mut args = w.passthrough_ssh_args(&proxy, &w.user_key);
    args.extend([HOST.to_string(), "sleep 60; echo finished".to_string()]);
    Command::new("ssh")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn an_administrator_can_end_a_passthrough_session() {
    let w = World::start();
    let mut child = long_passthrough_session(&w);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let list = w.admin_get("/sessions?workload=training-job-abc1234-0");
        if list.contains("\"front\":\"token\"") {
            break list;
        }
        assert!(std::time::Instant::now() < deadline, "never listed: {list}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(listed.contains("\"jti\":"), "{listed}");
    let killed = w.admin_request("POST", "/sessions/kill?workload=training-job-abc1234-0");
    assert!(killed.contains("\"front\":\"token\""), "{killed}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = wait_output(child, Duration::from_secs(20));
    assert!(!stdout(&out).contains("finished"));
    assert_ne!(out.status.code(), Some(0));
    // The edge counts the end just after the sockets close.
    w.wait_metric("ssh_edge_sessions_ended_total{reason=\"killed\"}", 1);
}

#[test]
fn passthrough_sessions_can_be_ended_by_token_subject() {
    let w = World::start();
    let mut child = long_passthrough_session(&w);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let sub = loop {
        let list = w.admin_get("/sessions");
        if let Some(rest) = list.split("\"sub\":\"").nth(1) {
            break rest.split('"').next().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "never listed: {list}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let query: String = url_encode(&sub);
    let killed = w.admin_request("POST", &format!("/sessions/kill?sub={query}"));
    assert!(killed.contains("\"front\":\"token\""), "{killed}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the session did not end"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!stdout(&wait_output(child, Duration::from_secs(120))).contains("finished"));
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
