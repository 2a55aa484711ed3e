//! The real edge binary on a lab config (a real sshd behind it), with its log captured, and
//! strict metric readers: a missing series fails the test instead of reading as 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ssh_edge::config::RawConfig;
use ssh_edge::lab::{Lab, free_port, wait_for_port};

pub const JOB: &str = "abc1234";
pub const USER: &str = "training-job-abc1234-0";

pub struct Door {
    child: Child,
    pub lab: Lab,
    pub tls: u16,
    pub ssh: u16,
    pub admin: u16,
    pub ssh_config: PathBuf,
    pub user_key: PathBuf,
    log: PathBuf,
    /// Sent as `Authorization: Bearer` to the admin endpoint.
    pub admin_token: Option<String>,
    _tmp: tempfile::TempDir,
}

impl Door {
    /// Starts `ssh-edge run` on a lab config the caller may adjust.
    pub fn start(adjust: impl FnOnce(&mut RawConfig, &Lab)) -> Door {
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::create(&tmp.path().join("lab"), &[JOB]).unwrap();
        let (tls, ssh, admin) = (free_port(), free_port(), free_port());
        let mut raw = lab
            .edge_config(&format!("127.0.0.1:{tls}"), &format!("127.0.0.1:{ssh}"))
            .unwrap();
        raw.listen.admin = Some(format!("127.0.0.1:{admin}"));
        adjust(&mut raw, &lab);
        let admin_token = raw
            .admin
            .bearer_token_file
            .as_ref()
            .map(|p| std::fs::read_to_string(p).unwrap().trim().to_string());
        let file = lab.write_config(&raw).unwrap();
        let log = lab.path("edge.log");
        let child = Command::new(env!("CARGO_BIN_EXE_ssh-edge"))
            .args(["run", "--config"])
            .arg(&file)
            .env("RUST_LOG", "info,russh=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        assert!(
            wait_for_port(ssh, Duration::from_secs(20)),
            "edge did not start"
        );
        let user_key = lab
            .issue_user_certificate("k", "door-user", &[JOB], Duration::from_secs(600))
            .unwrap();
        let ssh_config = lab
            .write_ssh_config(
                &user_key,
                Path::new(env!("CARGO_BIN_EXE_ssh-edge")),
                tls,
                ssh,
            )
            .unwrap();
        // Identities are cumulative in ssh_config: keep them out of the file so each login
        // offers exactly the key it names (see `Door::ssh`).
        let config = std::fs::read_to_string(&ssh_config).unwrap();
        let config: String = config
            .lines()
            .filter(|l| {
                let l = l.trim_start();
                !l.starts_with("IdentityFile") && !l.starts_with("CertificateFile")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&ssh_config, config).unwrap();
        Door {
            child,
            lab,
            tls,
            ssh,
            admin,
            ssh_config,
            user_key,
            log,
            admin_token,
            _tmp: tmp,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The edge's log so far (text format).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin, "/metrics", self.admin_token.as_deref())
    }

    /// The value of one series, e.g. `ssh_edge_logins_total{front="ssh"}`; the series must
    /// exist.
    pub fn metric(&self, series: &str) -> u64 {
        let text = self.metrics();
        metric_in(&text, series)
            .unwrap_or_else(|| panic!("metric series {series} missing from /metrics:\n{text}"))
    }

    /// Waits until `series` exists and satisfies `ok`, at most `timeout`; fails the test
    /// otherwise. Returns the value seen.
    pub fn wait_metric(&self, series: &str, timeout: Duration, ok: impl Fn(u64) -> bool) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.metrics();
            if let Some(v) = metric_in(&text, series)
                && ok(v)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "metric {series} did not reach the expected value in {timeout:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ssh` with the door's config and `key`, plus `extra` arguments, then `USER@127.0.0.1`
    /// and `command`; bounded in time.
    pub fn ssh(&self, key: &Path, extra: &[&str], command: &str) -> Output {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(&self.ssh_config)
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"])
            .arg("-i")
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}-cert.pub", key.display()))
            .args(extra)
            .arg(format!("{USER}@127.0.0.1"))
            .arg(command);
        run_with_timeout(&mut cmd, Duration::from_secs(60))
    }

    /// A user certificate made by `ssh-keygen` from the lab's user CA, with extra options.
    pub fn keygen_cert(&self, name: &str, extra: &[&str]) -> PathBuf {
        self.keygen_cert_with(name, "+10m", extra)
    }

    /// Like `keygen_cert`, valid for `validity` (ssh-keygen -V syntax).
    pub fn keygen_cert_valid(&self, name: &str, validity: &str) -> PathBuf {
        self.keygen_cert_with(name, validity, &[])
    }

    fn keygen_cert_with(&self, name: &str, validity: &str, extra: &[&str]) -> PathBuf {
        let key = self.lab.path(name);
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok, "ssh-keygen key generation failed");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(self.lab.path("user_ca"))
            .args(["-I", &format!("{name}-id"), "-V", validity, "-n", JOB])
            .args(extra)
            .arg(key.with_extension("pub"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen -s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        key
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn metric_in(text: &str, series: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .filter(|rest| rest.starts_with(' '))
            .and_then(|rest| rest.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    })
}

/// One HTTP/1.1 GET; the whole response (status line, headers, body).
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes());
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

pub use crate::process::run_with_timeout;

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
