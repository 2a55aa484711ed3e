//! A throwaway world on loopback: user CA, edge CA, host keys, TLS certificates and a real
//! `sshd` configured like the production backends (`TrustedUserCAKeys`,
//! `AuthorizedPrincipalsFile`). `ssh-edge demo` runs on it, and so do the integration tests
//! and the throughput bench, so all three exercise the same set-up.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::PrivateKey;

mod control_plane;
pub use control_plane::{IssuerLab, SleepingBackend};

use crate::config::{RawConfig, RawRemote, RawRoute, RawTokenKey};
use crate::hostname::DEFAULT_SUFFIX;
use crate::ssh_cert::{
    STANDARD_USER_EXTENSIONS, UserCertificate, random_ed25519_key, sign_user_certificate,
};

/// Token key ids of the lab's two remotes (front B).
pub(crate) const TOKEN_KIDS: [(&str, &str); 2] =
    [("default", "lab-default-1"), ("tenant-b", "lab-tenant-b-1")];

/// The token key id of a lab remote ("" for none).
pub(crate) fn token_kid(remote: &str) -> &'static str {
    TOKEN_KIDS
        .iter()
        .find(|(r, _)| *r == remote)
        .map_or("", |(_, k)| k)
}

/// Where sshd lives on Debian.
pub const SSHD: &str = "/usr/sbin/sshd";

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{SSHD} not found: install openssh-server (apt-get install -y openssh-server)")]
    NoSshd,
    #[error("lab file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("cannot mint key or certificate: {0}")]
    Key(String),
    #[error("sshd did not start: {0}")]
    Sshd(String),
}

pub(crate) fn file_err(path: &Path, e: impl std::fmt::Display) -> LabError {
    LabError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The throwaway world. Dropping it stops sshd and (unless `keep`) removes the directory.
pub struct Lab {
    pub dir: PathBuf,
    pub keep: bool,
    /// The backend login user (the current user, so no account has to be created).
    pub login_user: String,
    pub sshd_port: u16,
    sshd: Option<Child>,
    pub user_ca: PrivateKey,
    /// A second tenant's CA, trusted only by remote `tenant-b`.
    pub tenant_b_ca: PrivateKey,
    pub edge_host_key: PrivateKey,
    /// PID files of sleeping backends' sshds (started by a control plane's hook), stopped on
    /// drop.
    sleepers: Vec<PathBuf>,
}

/// Writes an OpenSSH private key file with mode 0600 and its `.pub` beside it.
pub(crate) fn write_key(path: &Path, key: &PrivateKey) -> Result<(), LabError> {
    crate::ssh_cert::write_key(path, key).map_err(|e| LabError::File {
        path: e.path,
        reason: e.reason,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| file_err(path, e))
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<(), LabError> {
    std::fs::write(path, contents).map_err(|e| file_err(path, e))
}

fn public_line(key: &PrivateKey) -> Result<String, LabError> {
    key.public_key()
        .to_openssh()
        .map_err(|e| LabError::Key(e.to_string()))
}

/// A free loopback port for a listener the caller starts at once (free for TCP and UDP when
/// checked).
///
/// Taken from below the kernel's ephemeral range, never handed out twice by one process: a
/// port from `bind(0)` is one the kernel also gives to outgoing connections, so under a busy
/// test run a client's socket could take it before the server that was meant to bind it.
pub fn free_port() -> u16 {
    free_port_on(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
}

/// As [`free_port`], free on `ip` (another loopback address, say 127.0.0.2).
pub fn free_port_on(ip: std::net::IpAddr) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static HANDED_OUT: AtomicU32 = AtomicU32::new(0);
    const LOWEST: u32 = 20_000;
    let below = ephemeral_range_start().unwrap_or(32_768);
    if below > LOWEST + 1_000 {
        let span = below - LOWEST;
        // Spread processes over the range so two test binaries rarely walk the same ports.
        let start = std::process::id().wrapping_mul(7_919) % span;
        for _ in 0..span {
            let n = HANDED_OUT.fetch_add(1, Ordering::Relaxed);
            let Ok(port) = u16::try_from(LOWEST + (start + n) % span) else {
                continue;
            };
            if std::net::TcpListener::bind((ip, port)).is_ok()
                && std::net::UdpSocket::bind((ip, port)).is_ok()
            {
                return port;
            }
        }
    }
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The first port of the kernel's ephemeral range (Linux), where outgoing connections take
/// their local ports.
fn ephemeral_range_start() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The name of the user this process runs as.
pub fn current_user() -> String {
    Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "root".into())
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

impl Lab {
    /// Creates keys and CAs in `dir` (created if missing, made world-readable because sshd
    /// reads the principals and CA files as the login user) and starts sshd accepting the
    /// given principals (job ids) for the current user.
    pub fn create(dir: &Path, principals: &[&str]) -> Result<Lab, LabError> {
        if !Path::new(SSHD).exists() {
            return Err(LabError::NoSshd);
        }
        std::fs::create_dir_all(dir.join("principals")).map_err(|e| file_err(dir, e))?;
        set_mode(dir, 0o755)?;
        let login_user = current_user();

        let user_ca = random_ed25519_key();
        let tenant_b_ca = random_ed25519_key();
        let edge_ca = random_ed25519_key();
        let edge_host_key = random_ed25519_key();
        let sshd_host_key = random_ed25519_key();
        write_key(&dir.join("user_ca"), &user_ca)?;
        write_key(&dir.join("tenant_b_ca"), &tenant_b_ca)?;
        write_key(&dir.join("edge_ca"), &edge_ca)?;
        write_key(&dir.join("edge_host_ed25519"), &edge_host_key)?;
        write_key(&dir.join("sshd_host_ed25519"), &sshd_host_key)?;
        write_tls(dir)?;
        for (remote, _) in TOKEN_KIDS {
            write_token_key(dir, remote)?;
        }

        // The backend trusts the edge CA (as in production) and, for the direct baseline in
        // benches and tests, the user CA too.
        write(
            &dir.join("backend_trusted_cas"),
            &format!("{}\n{}\n", public_line(&edge_ca)?, public_line(&user_ca)?),
        )?;
        write(
            &dir.join("principals").join(&login_user),
            &(principals.join("\n") + "\n"),
        )?;

        let mut lab = Lab {
            dir: dir.to_path_buf(),
            keep: false,
            login_user,
            sshd_port: 0,
            sshd: None,
            user_ca,
            tenant_b_ca,
            edge_host_key,
            sleepers: Vec::new(),
        };
        lab.start_sshd(&sshd_host_key)?;
        Ok(lab)
    }

    fn start_sshd(&mut self, host_key: &PrivateKey) -> Result<(), LabError> {
        // Privilege separation directory, needed when sshd runs as root.
        let _ = std::fs::create_dir_all("/run/sshd");
        let d = self.dir.clone();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile none\nTrustedUserCAKeys {d}/backend_trusted_cas\n\
                 AuthorizedPrincipalsFile {d}/principals/%u\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n\
                 UsePAM yes\nStrictModes no\nSubsystem sftp internal-sftp\nAcceptEnv LANG LC_* EDGE_TEST_*\n\
                 PrintMotd no\nLogLevel VERBOSE\nMaxStartups 1000:30:2000\nMaxSessions 1000\n",
                hk = d.join("sshd_host_ed25519").display(),
                d = d.display(),
            );
            let config_path = d.join("sshd_config");
            write(&config_path, &config)?;
            let log = std::fs::File::create(d.join("sshd.log")).map_err(|e| file_err(&d, e))?;
            let child = Command::new(SSHD)
                .arg("-D")
                .arg("-e")
                .arg("-f")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .map_err(|e| LabError::Sshd(e.to_string()))?;
            self.sshd = Some(child);
            if wait_for_port(port, Duration::from_secs(5)) {
                self.sshd_port = port;
                let known = format!("[127.0.0.1]:{port} {}\n", public_line(host_key)?);
                return write(&d.join("backend_known_hosts"), &known);
            }
            self.stop_sshd();
            last = std::fs::read_to_string(d.join("sshd.log")).unwrap_or_default();
        }
        Err(LabError::Sshd(last))
    }

    fn stop_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// An edge configuration for this lab: both fronts on the given addresses, routes for
    /// both default kinds to the lab's sshd, a `tenant-b` remote with its own CA.
    pub fn edge_config(&self, tls_listen: &str, ssh_listen: &str) -> Result<RawConfig, LabError> {
        let mut raw = RawConfig::default();
        raw.listen.tls = Some(tls_listen.into());
        raw.listen.ssh = Some(ssh_listen.into());
        raw.listen.admin = Some("127.0.0.1:0".into());
        raw.tls.cert_file = Some(self.path("tls-cert.pem"));
        raw.tls.key_file = Some(self.path("tls-key.pem"));
        raw.ssh.host_key_files = vec![self.path("edge_host_ed25519")];
        for (remote, ca) in [("default", &self.user_ca), ("tenant-b", &self.tenant_b_ca)] {
            let kid = token_kid(remote);
            let pem_path = self.path(&format!("token_{remote}.pem"));
            let public_key =
                std::fs::read_to_string(&pem_path).map_err(|e| file_err(&pem_path, e))?;
            raw.remotes.insert(
                remote.into(),
                RawRemote {
                    trusted_user_cas: vec![public_line(ca)?],
                    token_keys: vec![RawTokenKey {
                        kid: kid.into(),
                        public_key,
                    }],
                    ..RawRemote::default()
                },
            );
        }
        raw.backend.edge_ca_key_file = Some(self.path("edge_ca"));
        raw.backend.known_hosts_file = Some(self.path("backend_known_hosts"));
        raw.backend.connect_timeout_secs = 5;
        let backend = format!("127.0.0.1:{}", self.sshd_port);
        for (kind, principal) in [("training-job", "{job_id}"), ("model", "{model_id}")] {
            raw.routes.push(RawRoute {
                kind: kind.into(),
                backend: backend.clone(),
                login_user: self.login_user.clone(),
                principal: principal.into(),
                ..RawRoute::default()
            });
        }
        Ok(raw)
    }

    /// Writes `config` as TOML into the lab directory and returns its path.
    pub fn write_config(&self, config: &RawConfig) -> Result<PathBuf, LabError> {
        let path = self.path("edge.toml");
        let text = toml::to_string_pretty(config).map_err(|e| file_err(&path, e))?;
        write(&path, &text)?;
        Ok(path)
    }

    /// A user key and a certificate from the lab's user CA, like the signing service issues:
    /// returns the private key path; the certificate is beside it as `<name>-cert.pub`.
    pub fn issue_user_certificate(
        &self,
        name: &str,
        key_id: &str,
        principals: &[&str],
        validity: Duration,
    ) -> Result<PathBuf, LabError> {
        let key = random_ed25519_key();
        let key_path = self.path(name);
        write_key(&key_path, &key)?;
        let cert = sign_user_certificate(
            &self.user_ca,
            &UserCertificate {
                public_key: key.public_key(),
                principals,
                key_id,
                serial: u64::from(rand::random::<u32>()),
                now: crate::time::unix_now(),
                validity_secs: validity.as_secs(),
                extensions: STANDARD_USER_EXTENSIONS,
            },
        )
        .and_then(|cert| cert.to_openssh())
        .map_err(|e| LabError::Key(e.to_string()))?;
        write(&self.path(&format!("{name}-cert.pub")), &(cert + "\n"))?;
        Ok(key_path)
    }

    /// An OpenSSH client config for this lab: front A through `ssh-edge connect`, front C by
    /// address, the edge's host key pinned for both.
    pub fn write_ssh_config(
        &self,
        key: &Path,
        edge_exe: &Path,
        tls_port: u16,
        ssh_port: u16,
    ) -> Result<PathBuf, LabError> {
        let known = self.path("known_hosts");
        let host_key = public_line(&self.edge_host_key)?;
        write(
            &known,
            &format!("*.{DEFAULT_SUFFIX},[127.0.0.1]:{ssh_port} {host_key}\n"),
        )?;
        let common = format!(
            "  IdentityFile {key}\n  CertificateFile {key}-cert.pub\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n\
             \x20 StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            key = key.display(),
            known = known.display()
        );
        let config = format!(
            "Host *.{DEFAULT_SUFFIX}\n  ProxyCommand {exe} connect --edge 127.0.0.1:{tls_port} --ca-file {ca} %h\n{common}\n\
             Host 127.0.0.1\n  Port {ssh_port}\n{common}",
            exe = edge_exe.display(),
            ca = self.path("tls-ca.pem").display(),
        );
        let path = self.path("ssh_config");
        write(&path, &config)?;
        Ok(path)
    }
}

impl Lab {
    /// A front-B token for `host`, signed with `remote`'s lab key, valid `lifetime` from now.
    pub fn mint_token(
        &self,
        remote: &str,
        host: &str,
        lifetime: Duration,
    ) -> Result<String, LabError> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let kid = token_kid(remote);
        let path = self.path(&format!("token_{remote}.p8"));
        let der = std::fs::read(&path).map_err(|e| file_err(&path, e))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|e| LabError::Key(e.to_string()))?;
        let now = crate::time::unix_now();
        let claims = serde_json::json!({
            "iss": "ssh-edge", "aud": "ssh-edge", "sub": "lab-user", "jti": format!("lab-{}", rand::random::<u32>()),
            "host": host, "iat": now, "exp": now + lifetime.as_secs(),
        });
        crate::auth::token::sign_token(&key, kid, &claims).map_err(|e| LabError::Key(e.to_string()))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop_sshd();
        self.stop_sleepers();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A dev CA and a server certificate for `*.ssh.baseten.co`, `localhost` and 127.0.0.1.
fn write_tls(dir: &Path) -> Result<(), LabError> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let err = |e: rcgen::Error| LabError::Key(e.to_string());
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ssh-edge dev CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::new(vec![
        format!("*.{DEFAULT_SUFFIX}"),
        DEFAULT_SUFFIX.into(),
        format!("*.tenant-b.{DEFAULT_SUFFIX}"),
        "localhost".into(),
    ])
    .map_err(err)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(err)?;
    write(&dir.join("tls-ca.pem"), &ca_cert.pem())?;
    write(&dir.join("tls-cert.pem"), &cert.pem())?;
    let key_path = dir.join("tls-key.pem");
    let mut f = std::fs::File::create(&key_path).map_err(|e| file_err(&key_path, e))?;
    f.write_all(key.serialize_pem().as_bytes())
        .map_err(|e| file_err(&key_path, e))?;
    set_mode(&key_path, 0o600)
}

/// An ES256 token-signing key for one remote: `token_<remote>.p8` (PKCS#8, private) and
/// `token_<remote>.pem` (SubjectPublicKeyInfo PEM, for the edge config).
fn write_token_key(dir: &Path, remote: &str) -> Result<(), LabError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| LabError::Key(e.to_string()))?;
    let p8 = dir.join(format!("token_{remote}.p8"));
    std::fs::write(&p8, key.serialized_der()).map_err(|e| file_err(&p8, e))?;
    set_mode(&p8, 0o600)?;
    write(
        &dir.join(format!("token_{remote}.pem")),
        &key.public_key_pem(),
    )
}
