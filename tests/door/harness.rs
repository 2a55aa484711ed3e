//! The real edge binary on a lab config (a real sshd behind it), with its log captured, and
//! strict metric readers: a missing series fails the test instead of reading as 0.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::process::Bounded;
use ssh_edge::config::RawConfig;
use ssh_edge::lab::{Lab, free_port_on};

pub const JOB: &str = "abc1234";
pub const USER: &str = "training-job-abc1234-0";

pub struct Door {
    child: Child,
    pub lab: Lab,
    pub tls: u16,
    pub ssh: u16,
    pub admin: u16,
    /// The address every listener is bound to (127.0.0.1 unless `start_on` said otherwise).
    pub ip: IpAddr,
    /// The admin listener (on `ip` unless the adjustment moved it).
    pub admin_addr: SocketAddr,
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
        Door::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), adjust)
    }

    /// As [`Door::start`], with the TLS, SSH and admin listeners on `ip` (another loopback
    /// address, say 127.0.0.2; the backend sshd stays on 127.0.0.1). `adjust` may move the
    /// admin listener (`raw.listen.admin`); `admin` and `admin_addr` follow it.
    pub fn start_on(ip: IpAddr, adjust: impl FnOnce(&mut RawConfig, &Lab)) -> Door {
        Door::launch(ip, &[], adjust)
    }

    /// As [`Door::start`], with extra arguments to `ssh-edge run` (say `--log-format json`).
    pub fn start_with_args(args: &[&str], adjust: impl FnOnce(&mut RawConfig, &Lab)) -> Door {
        Door::launch(IpAddr::V4(Ipv4Addr::LOCALHOST), args, adjust)
    }

    fn launch(ip: IpAddr, args: &[&str], adjust: impl FnOnce(&mut RawConfig, &Lab)) -> Door {
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::create(&tmp.path().join("lab"), &[JOB]).unwrap();
        let (tls, ssh, admin) = (free_port_on(ip), free_port_on(ip), free_port_on(ip));
        let at = |port| SocketAddr::new(ip, port).to_string();
        let mut raw = lab.edge_config(&at(tls), &at(ssh)).unwrap();
        raw.listen.admin = Some(at(admin));
        adjust(&mut raw, &lab);
        let admin_addr = raw
            .listen
            .admin
            .as_deref()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or(SocketAddr::new(ip, admin));
        let admin = admin_addr.port();
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
            .args(args)
            .env("RUST_LOG", "info,russh=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        if !wait_for(SocketAddr::new(ip, ssh), Duration::from_secs(20)) {
            crate::process::never_listened(child, &format!("the edge on {ip}:{ssh}"), &log);
        }
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
        if ip != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            // The lab writes the client side for 127.0.0.1: the fronts are elsewhere here.
            let host = SocketAddr::new(ip, 0).to_string();
            let host = host.trim_end_matches(":0");
            let config = std::fs::read_to_string(&ssh_config)
                .unwrap()
                .replace("--edge 127.0.0.1:", &format!("--edge {host}:"))
                .replace("\nHost 127.0.0.1\n", &format!("\nHost {ip}\n"));
            std::fs::write(&ssh_config, config).unwrap();
            let known = lab.path("known_hosts");
            let hosts = std::fs::read_to_string(&known)
                .unwrap()
                .replace("[127.0.0.1]:", &format!("[{ip}]:"));
            std::fs::write(&known, hosts).unwrap();
        }
        let door = Door {
            child,
            lab,
            tls,
            ssh,
            admin,
            ip,
            admin_addr,
            ssh_config,
            user_key,
            log,
            admin_token,
            _tmp: tmp,
        };
        door.wait_for_the_probe();
        door
    }

    /// The start-up probe above (a bare connect to the SSH listener) holds a pre-auth slot of
    /// 127.0.0.1 from the edge's accept until the edge sees it close, and is counted as a
    /// rejection then. A loaded machine can leave it unaccepted for a while: tests start once
    /// it is counted and no slot is held, so their own counts and caps begin from a known state.
    fn wait_for_the_probe(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let prefix = "ssh_edge_connections_rejected_total{listener=\"ssh\",";
        loop {
            let text = self.metrics();
            let counted = text
                .lines()
                .filter(|l| l.starts_with(prefix))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            let held = metric_in(&text, "ssh_edge_unauthenticated_connections");
            if counted >= 1.0 && held == Some(0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the start-up probe was not counted as a rejection within 20 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`-HUP`, `-TERM`) to the edge.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status_bounded();
        assert!(status.success(), "kill {signal} failed");
    }

    /// The edge's log so far (text format).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        http_get_at(self.admin_addr, "/metrics", self.admin_token.as_deref())
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

    /// `ssh` with the door's config and `key`, plus `extra` arguments, then `USER@<ip>` (front
    /// C) and `command`; bounded in time.
    pub fn ssh(&self, key: &Path, extra: &[&str], command: &str) -> Output {
        run_with_timeout(
            &mut self.ssh_command(key, extra, command),
            Duration::from_secs(60),
        )
    }

    /// The command [`Door::ssh`] runs, not started (to hold its stdin, set its environment).
    pub fn ssh_command(&self, key: &Path, extra: &[&str], command: &str) -> Command {
        self.ssh_command_as(USER, key, extra, command)
    }

    /// As [`Door::ssh_command`], for the front C user (target) `user`.
    pub fn ssh_command_as(&self, user: &str, key: &Path, extra: &[&str], command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(&self.ssh_config)
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"])
            .arg("-i")
            .arg(key)
            .arg("-o")
            .arg(format!("CertificateFile={}-cert.pub", key.display()))
            .args(extra)
            .arg(format!("{user}@{}", self.ip))
            .arg(command);
        cmd
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
            .status_bounded()
            .success();
        assert!(ok, "ssh-keygen key generation failed");
        let out = Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(self.lab.path("user_ca"))
            .args(["-I", &format!("{name}-id"), "-V", validity, "-n", JOB])
            .args(extra)
            .arg(key.with_extension("pub"))
            .output_bounded();
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

/// Waits until something accepts connections at `addr`, at most `timeout`.
pub fn wait_for(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// One HTTP/1.1 GET to 127.0.0.1:`port`; the whole response (status line, headers, body).
pub fn http_get(port: u16, path: &str, token: Option<&str>) -> String {
    http_get_at(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path, token)
}

/// One HTTP/1.1 GET to `addr`; the whole response.
pub fn http_get_at(addr: SocketAddr, path: &str, token: Option<&str>) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
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
