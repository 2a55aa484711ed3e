//! The lab's control plane: `ssh-edge issuer` configured for the lab's CAs and token keys (and,
//! when asked, control-plane tokens), and sleeping backends: sshds that start only when the
//! issuer's `on_activate` hook runs, standing for on-demand workloads. The demo and the
//! tests use both.

use std::path::PathBuf;
use std::process::Command;

use super::{Lab, LabError, SSHD, file_err, token_kid, write};

/// A second sshd of the lab, configured like the first but not running.
pub struct SleepingBackend {
    pub port: u16,
    pub config: PathBuf,
    pub pid_file: PathBuf,
}

impl SleepingBackend {
    /// The `on_activate` command: waits `delay_secs` (waking a workload takes time), then
    /// starts sshd (which detaches and writes its PID file).
    pub fn start_command(&self, delay_secs: u32) -> String {
        format!("sleep {delay_secs}; {SSHD} -f {}", self.config.display())
    }
}

/// What the lab's issuer serves.
pub struct IssuerLab<'a> {
    /// `<host>:<port>` of the edge's TLS front, returned to helpers.
    pub proxy_address: String,
    /// API keys (in clear) of the default tenant and of `tenant-b`.
    pub api_keys: [&'a str; 2],
    /// `(edge, admin)` bearer tokens of the control plane; `None`: no control plane.
    pub control_plane: Option<(&'a str, &'a str)>,
    /// The default tenant's training jobs, as TOML inline tables separated by commas.
    pub default_jobs: &'a str,
    /// Serve HTTPS with the lab's TLS certificate (`localhost`, 127.0.0.1; CA `tls-ca.pem`).
    pub https: bool,
}

/// As the issuer stores API keys and tokens: hex SHA-256.
fn sha256_hex(s: &str) -> String {
    hex::encode(crate::issuer::api::digest_api_key(s))
}

impl Lab {
    /// A sleeping backend on `port` (e.g. [`free_port`](super::free_port)) accepting certificates for
    /// `principal` (besides the lab's own): its config and host key entry are written, it is
    /// not started. Stopped when the lab drops.
    pub fn sleeping_backend(
        &mut self,
        port: u16,
        principal: &str,
    ) -> Result<SleepingBackend, LabError> {
        let principals = self.path(&format!("principals/{}", self.login_user));
        let mut text =
            std::fs::read_to_string(&principals).map_err(|e| file_err(&principals, e))?;
        text.push_str(&format!("{principal}\n"));
        write(&principals, &text)?;
        let known = self.path("backend_known_hosts");
        let line = std::fs::read_to_string(&known).map_err(|e| file_err(&known, e))?;
        let key = line
            .lines()
            .next()
            .and_then(|l| l.split_once(' '))
            .map(|(_, key)| key.to_string())
            .ok_or_else(|| file_err(&known, "no host key line"))?;
        write(&known, &format!("{line}[127.0.0.1]:{port} {key}\n"))?;
        let pid_file = self.path(&format!("sshd_{port}.pid"));
        let main_config = self.path("sshd_config");
        let config: String = std::fs::read_to_string(&main_config)
            .map_err(|e| file_err(&main_config, e))?
            .lines()
            .map(|l| {
                if l.starts_with("Port ") {
                    format!("Port {port}\n")
                } else if l.starts_with("PidFile ") {
                    format!("PidFile {}\n", pid_file.display())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let config_path = self.path(&format!("sshd_config_{port}"));
        write(&config_path, &config)?;
        self.sleepers.push(pid_file.clone());
        Ok(SleepingBackend {
            port,
            config: config_path,
            pid_file,
        })
    }

    pub(super) fn stop_sleepers(&mut self) {
        for pid_file in self.sleepers.drain(..) {
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }

    /// Writes `issuer.toml` for the lab: tenants `default` (the lab's user CA, jobs
    /// `default_jobs`, model m1x2y3/d1) and `tenant-b` (job other99), their token keys, and
    /// the control plane's token hashes when asked. Returns its path.
    pub fn write_issuer_config(&self, opts: &IssuerLab<'_>) -> Result<PathBuf, LabError> {
        let control_plane = match opts.control_plane {
            Some((edge, admin)) => format!(
                "[control_plane]\nedge_token_sha256 = \"{}\"\nadmin_token_sha256 = \"{}\"\n",
                sha256_hex(edge),
                sha256_hex(admin)
            ),
            None => String::new(),
        };
        let tls = if opts.https {
            format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                self.path("tls-cert.pem").display(),
                self.path("tls-key.pem").display()
            )
        } else {
            String::new()
        };
        let config = format!(
            r#"listen = "127.0.0.1:0"
proxy_address = "{proxy}"
{tls}
[certificate]
validity_secs = 600

{control_plane}
[[tenants]]
name = "default"
api_keys = [{{ id = "ci-key", sha256 = "{k1}" }}]
user_ca_key_file = "{ca}"
token_key_file = "{tk}"
token_kid = "{kid1}"
training_jobs = [{jobs}]
models = [{{ model_id = "m1x2y3", deployments = ["d1"] }}]

[[tenants]]
name = "tenant-b"
api_keys = [{{ id = "b-key", sha256 = "{k2}" }}]
user_ca_key_file = "{ca_b}"
token_key_file = "{tk_b}"
token_kid = "{kid2}"
training_jobs = [{{ job_id = "other99", project_id = "p9" }}]
"#,
            proxy = opts.proxy_address,
            k1 = sha256_hex(opts.api_keys[0]),
            k2 = sha256_hex(opts.api_keys[1]),
            ca = self.path("user_ca").display(),
            tk = self.path("token_default.p8").display(),
            kid1 = token_kid("default"),
            ca_b = self.path("tenant_b_ca").display(),
            tk_b = self.path("token_tenant-b.p8").display(),
            kid2 = token_kid("tenant-b"),
            jobs = opts.default_jobs,
        );
        let path = self.path("issuer.toml");
        write(&path, &config)?;
        Ok(path)
    }
}
