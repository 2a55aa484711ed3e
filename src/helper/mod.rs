//! Our own client helper, for users without the vendor CLI: `ssh-edge setup` writes a key pair
//! and one managed block in `~/.ssh/config`; `ssh-edge sign HOST` (run by that block's
//! `Match … exec`) keeps a fresh certificate for ssh to read; `ssh-edge connect --sign`
//! (the block's ProxyCommand) asks the signing API for a token of its own, one per connection,
//! and speaks the token protocol (see [`crate::connect`]). No token is ever stored: the edge
//! takes each once, so a shared token file would let concurrent `ssh` runs spend each other's.

pub(crate) mod http;
mod setup;
mod sign;

pub use setup::{SetupOptions, managed_block, setup};
pub use sign::{SignOptions, fresh_token, sign};

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
pub(crate) fn state_dir(ssh_dir: &Path) -> PathBuf {
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
    // A name of its own per writer: concurrent `sign` runs (several `ssh` started at once)
    // must not write into each other's temporary file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{seq}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| file_err(&tmp, e))?;
    let written = f.write_all(contents).map_err(|e| file_err(&tmp, e));
    // Rename so a concurrent ssh never reads a half-written certificate.
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path).map_err(|e| file_err(path, e)));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several `sign` runs at once (several `ssh` started together) all succeed, and the file
    /// holds one writer's whole contents, never a mix.
    #[test]
    fn concurrent_writers_each_rename_a_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host-cert.pub");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 64 << 10]).collect();
        std::thread::scope(|s| {
            let writers: Vec<_> = contents
                .iter()
                .map(|c| s.spawn(|| write_private(&path, c)))
                .collect();
            for w in writers {
                w.join().unwrap().unwrap();
            }
        });
        let written = std::fs::read(&path).unwrap();
        assert!(contents.contains(&written), "a mix of writers");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left behind");
    }
}
