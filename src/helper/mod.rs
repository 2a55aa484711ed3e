//! Our own client helper, for users without the vendor CLI: `ssh-edge setup` writes a key pair
//! and one managed block in `~/.ssh/config`; `ssh-edge sign HOST` (run by that block's
//! `Match … exec`) fetches a fresh certificate and front-B token from the signing API;
//! `ssh-edge connect --token-file` (see [`crate::connect`]) then speaks the token protocol.

pub mod http;
mod setup;
mod sign;

pub use setup::{SetupOptions, managed_block, setup};
pub use sign::{SignOptions, sign};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What `setup` remembers for `sign`, in `<ssh_dir>/ssh-edge/settings.toml` (mode 0600: it
/// holds the API key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Signing API base URL, e.g. https://api.example.
    pub api: String,
    pub api_key: String,
    /// Edge address for `connect`, `host:port`.
    pub edge: String,
    /// PEM CA file to trust for the API and the edge instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// Host-name suffix, e.g. ssh.baseten.co.
    pub suffix: String,
}

#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error(
        "not set up: {path} is missing; run `ssh-edge setup --api URL --api-key KEY --edge HOST:PORT` first"
    )]
    NotSetUp { path: PathBuf },
    #[error("{0}")]
    Host(String),
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(
        "the signing API refused {host}: {message} (HTTP {status}); check the API key and that the workload is yours"
    )]
    Refused {
        host: String,
        status: u16,
        message: String,
    },
    #[error("the signing API answered without {field} for {host}")]
    Incomplete { host: String, field: &'static str },
    #[error("cannot find HOME to locate ~/.ssh; pass --ssh-dir")]
    NoHome,
}

pub(crate) fn file_err(path: &Path, e: impl std::fmt::Display) -> HelperError {
    HelperError::File {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// `--ssh-dir`, else `$HOME/.ssh`.
pub fn ssh_dir(given: Option<PathBuf>) -> Result<PathBuf, HelperError> {
    match given {
        Some(d) => Ok(d),
        None => std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".ssh"))
            .ok_or(HelperError::NoHome),
    }
}

/// Where the helper keeps its files.
pub fn state_dir(ssh_dir: &Path) -> PathBuf {
    ssh_dir.join("ssh-edge")
}

pub fn load_settings(ssh_dir: &Path) -> Result<Settings, HelperError> {
    let path = state_dir(ssh_dir).join("settings.toml");
    let text =
        std::fs::read_to_string(&path).map_err(|_| HelperError::NotSetUp { path: path.clone() })?;
    toml::from_str(&text).map_err(|e| file_err(&path, e))
}

pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), HelperError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    f.write_all(contents).map_err(|e| file_err(&tmp, e))?;
    // Rename so a concurrent ssh never reads a half-written certificate or token.
    std::fs::rename(&tmp, path).map_err(|e| file_err(path, e))
}
