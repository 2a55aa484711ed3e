//! The login grace, enforced on the socket: silent and stalled connections are cut at
//! `ssh.login_grace_secs` in every pre-auth phase, while real logins still land.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Door, text};

const GRACE_SECS: u64 = 8;
const PER_KIND: usize = 300;

/// How a flood connection stalls.
#[derive(Clone, Copy)]
enum Stall {
    /// TCP to front C, the identification line, then nothing.
    SshIdent,
    /// TLS to the TLS listener (SNI naming the job), `SSH-2.0-x`, then nothing.
    TlsIdent,
}

/// One stalled connection: how long after it was established the edge closed it (`Err` if
/// the edge never did within `limit`).
async fn stall(
    kind: Stall,
    port: u16,
    tls: Arc<tokio_rustls::TlsConnector>,
    limit: Duration,
) -> Result<Duration, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = async {
        match kind {
            Stall::SshIdent => {
                let mut s = tcp;
                s.write_all(b"SSH-2.0-x\r\n").await.ok();
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            }
            Stall::TlsIdent => {
                let name = rustls::pki_types::ServerName::try_from(
                    "training-job-abc1234-0.ssh.baseten.co",
                )
                .expect("valid name");
                let Ok(mut s) = tls.connect(name, tcp).await else {
                    return;
                };
                s.write_all(b"SSH-2.0-x\r\n").await.ok();
                s.flush().await.ok();
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            }
        }
    };
    match tokio::time::timeout(limit, closed).await {
        Ok(()) => Ok(started.elapsed()),
        Err(_) => Err(format!("still open after {limit:?}")),
    }
}

fn tls_connector(ca_pem: &[u8]) -> Arc<tokio_rustls::TlsConnector> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = ssh_edge::tls::client_config(roots).unwrap();
    Arc::new(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[test]
fn stalled_connections_are_cut_at_the_grace_time_while_a_real_login_lands() {
    let door = Door::start(|raw, _| {
        raw.ssh.login_grace_secs = GRACE_SECS;
        // This test is about the deadline: no cap may drop the flood first.
        raw.limits.preauth_start = 0;
        raw.limits.preauth_full = 0;
        raw.limits.per_source_max = 0;
        raw.limits.per_source_rate = 0.0;
        raw.tls.handshake_timeout_secs = 60;
    });
    let tls = tls_connector(&std::fs::read(door.lab.path("tls-ca.pem")).unwrap());
    let limit = Duration::from_secs(GRACE_SECS + 2);
    let (ssh_port, tls_port) = (door.ssh, door.tls);
    let flood = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for i in 0..2 * PER_KIND {
                let (kind, port) = if i % 2 == 0 {
                    (Stall::SshIdent, ssh_port)
                } else {
                    (Stall::TlsIdent, tls_port)
                };
                tasks.push(tokio::spawn(stall(kind, port, tls.clone(), limit)));
            }
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
            }
            results
        })
    });

    // The whole flood is held, unauthenticated...
    door.wait_metric(
        "ssh_edge_unauthenticated_connections",
        Duration::from_secs(GRACE_SECS - 2),
        |n| n >= (2 * PER_KIND) as u64,
    );
    // ...a real login lands through it...
    let out = door.ssh(&door.user_key, &[], "echo landed");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "landed\n",
        "{}",
        text(&out)
    );
    // ...and the flood was still there when it did.
    assert!(
        door.metric("ssh_edge_unauthenticated_connections") >= (2 * PER_KIND) as u64,
        "the flood ended before the login finished; the test proves nothing"
    );

    let results = flood.join().unwrap();
    let grace = Duration::from_secs(GRACE_SECS);
    let mut cut = 0;
    for (i, r) in results.iter().enumerate() {
        let kind = if i % 2 == 0 { "ssh" } else { "tls" };
        match r {
            Ok(after) => {
                // Closed by the deadline, not by something earlier.
                assert!(
                    *after + Duration::from_millis(500) >= grace,
                    "{kind} connection {i} closed after {after:?}, before the grace time"
                );
                cut += 1;
            }
            Err(e) => panic!("{kind} connection {i}: {e}"),
        }
    }
    assert_eq!(cut, 2 * PER_KIND);
    for listener in ["ssh", "tls"] {
        let series = format!(
            "ssh_edge_connections_rejected_total{{listener=\"{listener}\",reason=\"grace\"}}"
        );
        assert!(
            door.metric(&series) >= PER_KIND as u64,
            "{series} below {PER_KIND}"
        );
    }
    door.wait_metric(
        "ssh_edge_unauthenticated_connections",
        Duration::from_secs(10),
        |n| n == 0,
    );
    // One summary line for the drops (every 10 s at most), not one info line per drop.
    let deadline = Instant::now() + Duration::from_secs(25);
    let log = loop {
        let log = door.log();
        if log.contains("pre-auth drops in the last interval") && log.contains("grace=") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "no drop summary in the log:\n{}",
            &log[log.len().saturating_sub(3000)..]
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        log.matches("connection dropped").count() == 0,
        "per-drop lines logged at info"
    );
}

/// Accepts any host key: this client never gets as far as trusting anything.
struct AnyHostKey;

impl russh::client::Handler for AnyHostKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Reads until the edge closes; how long that took (`Err` past `limit`).
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    mut s: S,
    limit: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
    .map(|()| started.elapsed())
    .map_err(|_| format!("still open after {limit:?}"))
}

#[test]
fn every_phase_before_authentication_is_under_the_grace_time() {
    const GRACE: u64 = 2;
    let door = Door::start(|raw, _| {
        raw.ssh.login_grace_secs = GRACE;
        // Longer phase timers, so the grace deadline is what cuts.
        raw.tls.handshake_timeout_secs = 60;
        raw.token.preamble_timeout_secs = 60;
    });
    let tls = tls_connector(&std::fs::read(door.lab.path("tls-ca.pem")).unwrap());
    let limit = Duration::from_secs(GRACE + 2);
    let (ssh_port, tls_port) = (door.ssh, door.tls);
    // The harness's start-up probe (a bare connect) is counted as ssh_handshake: let that
    // land before the snapshot.
    door.wait_metric(
        "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"ssh_handshake\"}",
        Duration::from_secs(10),
        |n| n >= 1,
    );
    let before = door.metrics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connect = |port: u16| tokio::net::TcpStream::connect(("127.0.0.1", port));
    let name = || {
        rustls::pki_types::ServerName::try_from("training-job-abc1234-0.ssh.baseten.co").unwrap()
    };
    let phases: Vec<(&str, Result<Duration, String>)> = rt.block_on(async {
        let mut out = Vec::new();
        // TLS handshake: half a ClientHello, then nothing.
        let mut s = connect(tls_port).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x80, 0x01])
            .await
            .unwrap();
        out.push(("tls handshake", closed_within(s, limit).await));
        // Token preamble: TLS done, half a length prefix.
        let mut s = tls
            .connect(name(), connect(tls_port).await.unwrap())
            .await
            .unwrap();
        s.write_all(&[0, 0]).await.unwrap();
        s.flush().await.unwrap();
        out.push(("token preamble", closed_within(s, limit).await));
        // SSH identification: half a line.
        let mut s = connect(ssh_port).await.unwrap();
        s.write_all(b"SSH-2.0-hal").await.unwrap();
        out.push(("ssh identification", closed_within(s, limit).await));
        // Key exchange: identification, then half a binary packet.
        let mut s = connect(ssh_port).await.unwrap();
        s.write_all(b"SSH-2.0-x\r\n\x00\x00\x01\x00\x0a\x14")
            .await
            .unwrap();
        out.push(("key exchange", closed_within(s, limit).await));
        // Authentication: a real SSH client finishes the key exchange and never logs in.
        let started = Instant::now();
        let config = Arc::new(russh::client::Config::default());
        let handle = russh::client::connect(config, ("127.0.0.1", ssh_port), AnyHostKey)
            .await
            .unwrap();
        let closed = tokio::time::timeout(limit, async {
            while !handle.is_closed() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        out.push((
            "authentication",
            closed
                .map(|()| started.elapsed())
                .map_err(|_| format!("still open after {limit:?}")),
        ));
        out
    });
    for (phase, result) in &phases {
        let after = result.as_ref().unwrap_or_else(|e| panic!("{phase}: {e}"));
        assert!(
            *after + Duration::from_millis(500) >= Duration::from_secs(GRACE),
            "{phase}: closed after {after:?}, before the grace time"
        );
    }
    // Each cut is counted once, as a grace drop, on its listener, before the close the client
    // saw: there already, exactly.
    assert_eq!(
        door.metric("ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"grace\"}"),
        2
    );
    assert_eq!(
        door.metric("ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"grace\"}"),
        3
    );
    // The phases' own reasons did not count them a second time (the harness's start-up
    // probe, a bare connect, is the one ssh_handshake).
    let after = door.metrics();
    for (reason, listener) in [
        ("tls_timeout", "tls"),
        ("tls_handshake", "tls"),
        ("preamble_timeout", "tls"),
        ("truncated_preamble", "tls"),
        ("ssh_handshake", "ssh"),
    ] {
        let series = format!(
            "ssh_edge_connections_rejected_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        );
        // Absent before and after, or the same value: either way not counted again.
        let count = |text: &str| crate::harness::metric_in(text, &series);
        assert_eq!(
            count(&after),
            count(&before),
            "also counted as {reason}:\n{after}"
        );
    }
}
