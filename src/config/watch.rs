//! Reload on file change: a ConfigMap update or a rotated key sends no signal, so the edge
//! also notices when the config file, or any file it names, changes.
//!
//! Polling, not inotify: Kubernetes swaps a ConfigMap's files by replacing a symlinked
//! directory, which file watches follow badly; hashing a handful of small files every few
//! seconds is cheap and sees every kind of change. A change is applied once it has held still
//! for one poll (debounce), so a file written in pieces is not loaded half-way.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::RawConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawReload {
    /// Reload when the config file or a file it names changes (as well as on SIGHUP).
    pub watch: bool,
    /// Seconds between checks; a change is applied after it held still for one more.
    pub watch_interval_secs: u64,
}

impl Default for RawReload {
    fn default() -> Self {
        Self {
            watch: true,
            watch_interval_secs: 2,
        }
    }
}

/// The config file and every file the configuration names.
pub(crate) fn watched_files(config: &Path, raw: Option<&RawConfig>) -> Vec<PathBuf> {
    let mut files = vec![config.to_path_buf()];
    if let Some(raw) = raw {
        files.extend(raw.tls.cert_file.iter().cloned());
        files.extend(raw.tls.key_file.iter().cloned());
        files.extend(raw.ssh.host_key_files.iter().cloned());
        files.extend(raw.ssh.host_certificate_files.iter().cloned());
        files.extend(raw.backend.edge_ca_key_file.iter().cloned());
        files.extend(raw.backend.identity_file.iter().cloned());
        files.extend(raw.backend.known_hosts_file.iter().cloned());
        files.extend(raw.admin.bearer_token_file.iter().cloned());
        files.extend(raw.control_plane.token_file.iter().cloned());
        files.extend(raw.control_plane.ca_file.iter().cloned());
    }
    files
}

/// One hash over the names and contents of `files` (a missing file hashes as missing).
pub(crate) fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for f in files {
        hash.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                hash.update([1]);
                hash.update((bytes.len() as u64).to_be_bytes());
                hash.update(&bytes);
            }
            Err(_) => hash.update([0]),
        }
    }
    hash.finalize().into()
}

/// Decides when to reload: pure, fed one fingerprint per poll.
#[derive(Debug)]
pub(crate) struct Debounce {
    applied: [u8; 32],
    last_seen: [u8; 32],
}

impl Debounce {
    pub(crate) fn new(initial: [u8; 32]) -> Self {
        Self {
            applied: initial,
            last_seen: initial,
        }
    }

    /// True when `now` differs from what was applied and is what the previous poll saw too.
    /// The caller reloads then; the new state counts as applied whether or not the reload
    /// succeeded (a broken file is tried again when it changes again).
    pub(crate) fn poll(&mut self, now: [u8; 32]) -> bool {
        let settled = now == self.last_seen;
        self.last_seen = now;
        if settled && now != self.applied {
            self.applied = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_applied_once_it_holds_still() {
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        let mut d = Debounce::new(a);
        assert!(!d.poll(a));
        assert!(!d.poll(b), "first sight of a change waits");
        assert!(!d.poll(c), "still changing");
        assert!(d.poll(c), "held still for one poll");
        assert!(!d.poll(c), "applied once");
        assert!(!d.poll(a));
        assert!(d.poll(a), "changing back is a change too");
    }

    #[test]
    fn fingerprints_see_content_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        let files = vec![f.clone()];
        let missing = fingerprint(&files);
        std::fs::write(&f, "one").unwrap();
        let one = fingerprint(&files);
        assert_ne!(missing, one);
        std::fs::write(&f, "two").unwrap();
        assert_ne!(one, fingerprint(&files));
        std::fs::write(&f, "one").unwrap();
        assert_eq!(one, fingerprint(&files));
    }
}
