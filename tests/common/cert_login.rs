//! A russh client that presents a given certificate: for certificates OpenSSH's `ssh` will not
//! present (a host certificate, one whose CA signature was tampered with: `ssh` checks that
//! signature when it loads the file and falls back to the plain key). Included with `#[path]`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{Certificate, PrivateKey};

struct AcceptEdgeKey;

impl russh::client::Handler for AcceptEdgeKey {
    type Error = russh::Error;
    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Logs in to an SSH front at `edge` as `user` with `key` and `cert`. Returns whether the
/// login was accepted and the client's own address (what the edge logs as the peer). Bounded:
/// a hang fails the test.
pub fn login_with_cert(
    edge: SocketAddr,
    user: &str,
    key: PrivateKey,
    cert: Certificate,
) -> (bool, SocketAddr) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let login = async {
        let stream = tokio::net::TcpStream::connect(edge).await.expect("connect");
        let local = stream.local_addr().expect("local address");
        let config = Arc::new(russh::client::Config::default());
        let mut handle = russh::client::connect_stream(config, stream, AcceptEdgeKey)
            .await
            .expect("SSH handshake");
        let result = handle
            .authenticate_openssh_cert(user, Arc::new(key), cert)
            .await
            .expect("authentication exchange");
        (result.success(), local)
    };
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), login)
            .await
            .expect("the login hung")
    })
}

/// A certificate signed by `ca` for a fresh key (key id `russh-presented`, serial 4711, one
/// principal), and that key.
pub fn fresh_cert(
    ca: &PrivateKey,
    principal: &str,
    host_type: bool,
    valid_after: u64,
    valid_before: u64,
) -> (PrivateKey, Certificate) {
    use russh::keys::ssh_key::certificate::{Builder, CertType};

    let key = ssh_edge::upstream::random_ed25519_key();
    let mut b = Builder::new(
        vec![7u8; 32],
        key.public_key().key_data().clone(),
        valid_after,
        valid_before,
    )
    .expect("certificate builder");
    let cert_type = if host_type {
        CertType::Host
    } else {
        CertType::User
    };
    b.cert_type(cert_type)
        .and_then(|b| b.key_id("russh-presented"))
        .and_then(|b| b.serial(4711))
        .and_then(|b| b.valid_principal(principal))
        .expect("certificate fields");
    let cert = b.sign(ca).expect("signing");
    (key, cert)
}

/// `cert` with one byte of its CA signature flipped (the last byte of the encoded blob, inside
/// the signature), as an attacker would edit the base64 of an `ssh-keygen`-signed certificate.
pub fn tamper_signature(cert: &Certificate) -> Certificate {
    use russh::keys::ssh_encoding::{Decode, Encode};
    let mut blob = Vec::new();
    cert.encode(&mut blob).expect("encode certificate");
    *blob.last_mut().expect("non-empty blob") ^= 0x01;
    let tampered = Certificate::decode(&mut blob.as_slice()).expect("still parses");
    assert!(
        tampered.verify_signature().is_err(),
        "the flipped byte left the signature valid"
    );
    tampered
}
