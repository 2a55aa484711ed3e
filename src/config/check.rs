//! `ssh-edge check-config`: every problem of a config at once, optionally without reading the
//! files it names (checked on a machine other than the one it is for).

use std::path::{Path, PathBuf};

use figment::Figment;

use super::{ConfigError, RawConfig, extract, figment_for, validate};

/// Reads `file` (and `SSH_EDGE_*`) and validates it. Keys that cannot be read (unknown,
/// mistyped) are listed together with what validating the rest finds. With `files` false,
/// problems reading the files the config names (keys, certificates, token files, known_hosts,
/// the audit file's directory) are left out: everything else is checked.
///
/// # Errors
/// [`ConfigError::Invalid`] with every problem found.
pub fn check(file: Option<&Path>, files: bool) -> Result<RawConfig, ConfigError> {
    let figment: Figment = figment_for(RawConfig::default(), file)?;
    let (raw, mut problems) =
        extract::extract_lenient::<RawConfig>(&figment).map_err(ConfigError::Invalid)?;
    if let Err(ConfigError::Invalid(found)) = validate(&raw) {
        let skipped = if files {
            Vec::new()
        } else {
            file_problem_prefixes(&raw)
        };
        problems.extend(
            found
                .into_iter()
                .filter(|p| !skipped.iter().any(|prefix| p.starts_with(prefix.as_str()))),
        );
    }
    if problems.is_empty() {
        Ok(raw)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// How validation begins a problem with a configured file: `<key> <path>:`.
fn file_problem_prefixes(raw: &RawConfig) -> Vec<String> {
    let one = |key: &'static str, path: &Option<PathBuf>| path.clone().map(|p| (key, p));
    let many = |key: &'static str, paths: &[PathBuf]| {
        paths
            .iter()
            .cloned()
            .map(move |p| (key, p))
            .collect::<Vec<_>>()
    };
    let mut files: Vec<(&str, PathBuf)> = [
        one("tls.cert_file", &raw.tls.cert_file),
        one("tls.key_file", &raw.tls.key_file),
        one("backend.edge_ca_key_file", &raw.backend.edge_ca_key_file),
        one("backend.identity_file", &raw.backend.identity_file),
        one("backend.known_hosts_file", &raw.backend.known_hosts_file),
        one("admin.bearer_token_file", &raw.admin.bearer_token_file),
        one("control_plane.token_file", &raw.control_plane.token_file),
        one("control_plane.ca_file", &raw.control_plane.ca_file),
        one("audit.file", &raw.audit.file),
    ]
    .into_iter()
    .flatten()
    .collect();
    files.extend(many("ssh.host_key_files", &raw.ssh.host_key_files));
    files.extend(many(
        "ssh.host_certificate_files",
        &raw.ssh.host_certificate_files,
    ));
    files
        .into_iter()
        .map(|(key, path)| format!("{key} {}:", path.display()))
        .collect()
}
