//! A test world: the lab (real sshd, throwaway CAs and keys in a temp dir), the edge running
//! in-process on random loopback ports, and helpers that drive the real OpenSSH tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use ssh_edge::config::{self, RawConfig};
use ssh_edge::edge::LiveEdge;
use ssh_edge::lab::Lab;
use ssh_edge::metrics::Metrics;
use ssh_edge::server::{ConfigSource, Reloader, Server};

pub const JOB: &str = "abc1234";
pub const HOST: &str = "training-job-abc1234-0.ssh.baseten.co";

pub struct World {
    pub lab: Lab,
    pub tls_port: u16,
    pub ssh_port: u16,
    pub admin_port: u16,
    /// Front B on plain TCP; 0 unless the test's config enables `listen.token_plain`.
    pub token_plain_port: u16,
    pub metrics: Arc<Metrics>,
    /// ssh_config with the default user key (principal `abc1234`).
    pub ssh_config: PathBuf,
    pub user_key: PathBuf,
    /// The edge's config file (`lab/edge.toml`): rewrite it, then [`World::reload`].
    pub config_path: PathBuf,
    /// The generation in force (sessions, metrics).
    pub live: LiveEdge,
    reloader: Reloader,
    /// Completing it starts the drain ([`World::shut_down`]).
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// `server::Server::run`, ending when the drain is over.
    serving: Option<tokio::task::JoinHandle<()>>,
    runtime: tokio::runtime::Runtime,
    _tmp: tempfile::TempDir,
}

/// How a test reaches the edge.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    /// Front A with `ssh-edge connect` as ProxyCommand.
    Connect,
    /// Front A with `openssl s_client` as ProxyCommand.
    Openssl,
    /// Front C: target in the user name.
    PlainSsh,
}

pub const ALL_FRONTS: [Via; 3] = [Via::Connect, Via::Openssl, Via::PlainSsh];

impl World {
    pub fn start() -> World {
        Self::start_with(|_| {})
    }

    /// Starts a world whose edge config the caller may adjust first.
    pub fn start_with(adjust: impl FnOnce(&mut RawConfig)) -> World {
        let tmp = tempfile::tempdir().expect("temp dir");
        let lab =
            Lab::create(&tmp.path().join("lab"), &[JOB, "m1x2y3", "other99"]).expect("lab starts");
        let mut raw = lab
            .edge_config("127.0.0.1:0", "127.0.0.1:0")
            .expect("lab config");
        adjust(&mut raw);
        let config_path = lab.write_config(&raw).expect("config file");
        let config = config::validate(&raw).expect("valid config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        // The edge runs as the binary runs it: `server::Server`, reloads and drain included.
        let source = ConfigSource {
            path: Some(config_path.clone()),
            watch: raw.reload.clone(),
        };
        let server = runtime
            .block_on(Server::bind(config, source))
            .expect("edge binds");
        let addresses = server.addresses();
        let port = |a: Option<std::net::SocketAddr>| a.map_or(0, |a| a.port());
        let (tls_port, ssh_port, admin_port, token_plain_port) = (
            port(addresses.tls),
            port(addresses.ssh),
            port(addresses.admin),
            port(addresses.token_plain),
        );
        let live = server.live();
        let metrics = live.current().metrics.clone();
        let reloader = server.reloader();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let serving = runtime.spawn(server.run(async move {
            let _ = stop.await;
        }));
        let user_key = lab
            .issue_user_certificate(
                "user_key",
                "alice@example",
                &[JOB, "m1x2y3"],
                Duration::from_secs(600),
            )
            .expect("user cert");
        let ssh_config = lab
            .write_ssh_config(
                &user_key,
                Path::new(env!("CARGO_BIN_EXE_ssh-edge")),
                tls_port,
                ssh_port,
            )
            .expect("ssh config");
        // Identities are cumulative in ssh_config: keep them out of the file so each test
        // offers exactly the key it names (see `ssh_args_with_key`).
        let text = std::fs::read_to_string(&ssh_config).unwrap();
        let text: String = text
            .lines()
            .filter(|l| {
                !l.trim_start().starts_with("IdentityFile")
                    && !l.trim_start().starts_with("CertificateFile")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&ssh_config, text).unwrap();
        World {
            lab,
            tls_port,
            ssh_port,
            admin_port,
            token_plain_port,
            metrics,
            ssh_config,
            user_key,
            config_path,
            live,
            reloader,
            shutdown: Some(shutdown),
            serving: Some(serving),
            runtime,
            _tmp: tmp,
        }
    }

    /// Asks the edge to reload its config file (what SIGHUP does).
    pub fn reload(&self) {
        self.reloader.reload();
    }

    /// Starts the drain (what SIGTERM does); the returned wait is true once the server's run
    /// ended (every session over), false if it had not within `timeout`.
    pub fn shut_down(&mut self) -> impl FnOnce(Duration) -> bool + '_ {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        move |timeout| {
            let Some(serving) = self.serving.take() else {
                return true;
            };
            let ended = self
                .runtime
                .block_on(async { tokio::time::timeout(timeout, serving).await });
            matches!(ended, Ok(Ok(())))
        }
    }

    /// `ssh` arguments reaching `host` via `via` (host = workload host name).
    pub fn ssh_args(&self, via: Via, host: &str) -> Vec<String> {
        self.ssh_args_with_key(&self.user_key, via, host)
    }

    /// Like `ssh_args`, offering only `key` and its `-cert.pub`.
    pub fn ssh_args_with_key(&self, key: &Path, via: Via, host: &str) -> Vec<String> {
        let mut args = vec![
            "-F".to_string(),
            self.ssh_config.display().to_string(),
            "-o".into(),
            "BatchMode=yes".into(),
        ];
        args.extend([
            "-i".to_string(),
            key.display().to_string(),
            "-o".into(),
            format!("CertificateFile={}-cert.pub", key.display()),
        ]);
        match via {
            Via::Connect => args.push(host.into()),
            Via::Openssl => {
                args.push("-o".into());
                args.push(format!(
                    "ProxyCommand=openssl s_client -quiet -verify_quiet -connect 127.0.0.1:{} -servername %h 2>/dev/null",
                    self.tls_port
                ));
                args.push(host.into());
            }
            Via::PlainSsh => {
                let workload = host.strip_suffix(".ssh.baseten.co").unwrap_or(host);
                args.push(format!("{workload}@127.0.0.1"));
            }
        }
        args
    }

    /// ssh arguments for front B: `proxy_command` as ProxyCommand (a helper speaking the token
    /// protocol), the backend's own host key (passthrough: sshd answers), only `key` and its
    /// certificate, the route's login user. The caller appends host and command.
    pub fn passthrough_ssh_args(&self, proxy_command: &str, key: &Path) -> Vec<String> {
        let known = format!(
            "UserKnownHostsFile={}",
            self.lab.path("backend_known_hosts").display()
        );
        let alias = format!("HostKeyAlias=[127.0.0.1]:{}", self.lab.sshd_port);
        let mut args: Vec<String> = [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
        ]
        .map(String::from)
        .to_vec();
        args.extend([
            "-o".into(),
            format!("ProxyCommand={proxy_command}"),
            "-o".into(),
            known,
            "-o".into(),
            alias,
        ]);
        args.extend([
            "-i".into(),
            key.display().to_string(),
            "-o".into(),
            format!("CertificateFile={}-cert.pub", key.display()),
        ]);
        args.extend(["-o".into(), format!("User={}", self.lab.login_user)]);
        args
    }

    /// `ssh_args` plus a ControlMaster socket, so calls share one connection (as VS Code
    /// does). The destination stays last.
    pub fn ssh_args_muxed(&self, via: Via, host: &str, control: &Path) -> Vec<String> {
        let mut args = self.ssh_args(via, host);
        let dest = args.pop().unwrap();
        args.extend([
            "-o".into(),
            "ControlMaster=auto".into(),
            "-o".into(),
            format!("ControlPath={}", control.display()),
        ]);
        args.extend(["-o".into(), "ControlPersist=60".into(), dest]);
        args
    }

    /// Runs `ssh … command` and returns its output.
    pub fn ssh(&self, via: Via, host: &str, extra: &[&str], command: &str) -> Output {
        self.ssh_as(&self.user_key, via, host, extra, command)
    }

    /// Runs `ssh … command` offering only `key`.
    pub fn ssh_as(
        &self,
        key: &Path,
        via: Via,
        host: &str,
        extra: &[&str],
        command: &str,
    ) -> Output {
        let mut args = self.ssh_args_with_key(key, via, host);
        let dest = args.pop().unwrap();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(dest);
        args.push(command.into());
        run_with_timeout(Command::new("ssh").args(&args), Duration::from_secs(60))
    }

    /// Issues a user certificate with the real `ssh-keygen` from `ca` (a key file in the lab).
    /// `extra` are additional ssh-keygen options (e.g. `-O source-address=…`, `-t` host).
    pub fn keygen_cert(
        &self,
        name: &str,
        ca: &str,
        principals: Option<&str>,
        validity: &str,
        extra: &[&str],
    ) -> PathBuf {
        let key = self.lab.path(name);
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status_bounded();
        assert!(status.success(), "ssh-keygen key generation failed");
        let mut sign = Command::new("ssh-keygen");
        sign.args(["-q", "-s"]).arg(self.lab.path(ca)).args([
            "-I",
            &format!("{name}-id"),
            "-V",
            validity,
        ]);
        if let Some(p) = principals {
            sign.args(["-n", p]);
        }
        sign.args(extra).arg(key.with_extension("pub"));
        let out = sign.output_bounded();
        assert!(
            out.status.success(),
            "ssh-keygen -s failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // ssh-keygen writes name-cert.pub next to name.pub
        key
    }

    /// One request to the admin endpoint; the whole response.
    pub fn admin_request(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.admin_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    pub fn admin_get(&self, path: &str) -> String {
        self.admin_request("GET", path)
    }

    pub fn metric(&self, name_and_labels: &str) -> u64 {
        metric_value(&self.metrics.render(), name_and_labels)
    }

    /// Waits until the series exists and equals `want` (counted after the close the client
    /// saw, say), failing the test after 20 s with the last scrape.
    pub fn wait_metric(&self, name_and_labels: &str, want: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.metrics.render();
            if series_value(&text, name_and_labels) == Some(want) {
                return;
            }
            if std::time::Instant::now() > deadline {
                let got = metric_value(&text, name_and_labels);
                panic!("{name_and_labels} is {got}, not {want}, after 20 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The value of one sample line (`name{labels}`, exactly) in Prometheus text output. A missing
/// series fails the test: a renamed metric or label must not read as 0.
pub fn metric_value(text: &str, name_and_labels: &str) -> u64 {
    series_value(text, name_and_labels).unwrap_or_else(|| {
        let name = name_and_labels.split('{').next().unwrap_or(name_and_labels);
        let related: Vec<&str> = text.lines().filter(|l| l.contains(name)).collect();
        panic!(
            "metric series {name_and_labels} missing from the scrape; lines naming {name}:\n{}",
            related.join("\n")
        )
    })
}

/// The value of one series if the scrape has it.
fn series_value(text: &str, name_and_labels: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    })
}

pub use crate::process::{Bounded, run_with_timeout, wait_exit, wait_output};

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Hex SHA-256, to compare transferred files.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}
