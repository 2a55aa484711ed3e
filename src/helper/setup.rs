//! `ssh-edge setup`: key pair, settings, and one marked, idempotent block in `~/.ssh/config`.

use std::path::PathBuf;

use super::{HelperError, Settings, file_err, state_dir, write_private};
use crate::hostname::{MODEL_PREFIX, TRAINING_JOB_PREFIX};
use crate::ssh_cert::{random_ed25519_key, write_key};

const BEGIN: &str =
    "# >>> ssh-edge: managed by `ssh-edge setup`; edits inside this block are overwritten >>>";
const END: &str = "# <<< ssh-edge <<<";

#[derive(Debug, Clone)]
pub struct SetupOptions {
    pub ssh_dir: PathBuf,
    pub settings: Settings,
    /// The ssh-edge binary the block runs (absolute path).
    pub exe: PathBuf,
    /// Login users per kind, as the vendor CLI sets them.
    pub training_user: String,
    pub model_user: String,
}

/// The `~/.ssh/config` block: keep the certificate fresh before connecting (ssh reads it from
/// the file), then connect through front B with a token fetched for that one connection (the
/// edge, CA and API come from the saved settings).
pub fn managed_block(opts: &SetupOptions) -> String {
    let state = state_dir(&opts.ssh_dir);
    let s = &opts.settings;
    let exe = opts.exe.display();
    format!(
        "{BEGIN}\n\
         Match host *.{suffix} exec \"{exe} sign --ssh-dir {ssh} %n\"\n\
         \x20 ProxyCommand {exe} connect --sign --ssh-dir {ssh} %n\n\
         \x20 IdentityFile {state}/id_ed25519\n\
         \x20 CertificateFile {state}/certs/%n-cert.pub\n\
         \x20 IdentitiesOnly yes\n\
         Match host {TRAINING_JOB_PREFIX}*.{suffix}\n\
         \x20 User {tu}\n\
         Match host {MODEL_PREFIX}*.{suffix}\n\
         \x20 User {mu}\n\
         {END}\n",
        suffix = s.suffix,
        ssh = opts.ssh_dir.display(),
        state = state.display(),
        tu = opts.training_user,
        mu = opts.model_user,
    )
}

/// Replaces the managed block in `config` (or appends it); everything else is kept.
pub(super) fn with_block(config: &str, block: &str) -> String {
    match (config.find(BEGIN), config.find(END)) {
        (Some(start), Some(end)) if end > start => {
            let after = &config[end + END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            format!("{}{block}{after}", &config[..start])
        }
        _ => {
            let sep = if config.is_empty() || config.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            // At the end: `Match` blocks apply to everything after them.
            format!(
                "{config}{sep}{}{block}",
                if config.is_empty() { "" } else { "\n" }
            )
        }
    }
}

/// Writes the key pair (kept if present), settings and the config block. Idempotent.
pub fn setup(opts: &SetupOptions) -> Result<PathBuf, HelperError> {
    let state = state_dir(&opts.ssh_dir);
    for dir in [state.clone(), state.join("certs")] {
        std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
    }
    // Tokens an older block stored for `connect --token-file`: no longer read, still secrets.
    let tokens = state.join("tokens");
    match std::fs::remove_dir_all(&tokens) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(file_err(&tokens, e)),
        _ => {}
    }
    let key_path = state.join("id_ed25519");
    if !key_path.exists() {
        write_key(&key_path, &random_ed25519_key()).map_err(|e| file_err(&key_path, e))?;
    }
    let settings = toml::to_string(&opts.settings).map_err(|e| file_err(&state, e))?;
    write_private(&state.join("settings.toml"), settings.as_bytes())?;
    let config_path = opts.ssh_dir.join("config");
    let old = std::fs::read_to_string(&config_path).unwrap_or_default();
    let new = with_block(&old, &managed_block(opts));
    if new != old {
        std::fs::write(&config_path, new).map_err(|e| file_err(&config_path, e))?;
    }
    Ok(config_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_is_appended_once_and_replaced_in_place() {
        let block_a = format!("{BEGIN}\nA\n{END}\n");
        let block_b = format!("{BEGIN}\nB\n{END}\n");
        let original = "Host work\n  User me\n";
        let once = with_block(original, &block_a);
        assert!(once.starts_with(original));
        assert!(once.ends_with(&block_a));
        assert_eq!(with_block(&once, &block_a), once, "idempotent");
        let replaced = with_block(&once, &block_b);
        assert_eq!(replaced.matches(BEGIN).count(), 1);
        assert!(replaced.contains("\nB\n") && !replaced.contains("\nA\n"));
        let with_tail = format!("{once}Host later\n");
        let replaced = with_block(&with_tail, &block_b);
        assert!(
            replaced.ends_with("Host later\n"),
            "text after the block is kept: {replaced}"
        );
        assert_eq!(with_block("", &block_a), block_a);
    }

    fn options(ssh_dir: &std::path::Path) -> SetupOptions {
        SetupOptions {
            ssh_dir: ssh_dir.to_path_buf(),
            settings: Settings {
                api: "https://api.example".into(),
                api_key: "k".into(),
                edge: "edge.example:443".into(),
                ca_file: None,
                suffix: "ssh.baseten.co".into(),
            },
            exe: "/opt/ssh-edge".into(),
            training_user: "baseten".into(),
            model_user: "app".into(),
        }
    }

    #[test]
    fn block_fetches_a_token_per_connection_and_stores_none() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().display();
        let block = managed_block(&options(dir.path()));
        assert!(
            block.contains(&format!(
                "\n  ProxyCommand /opt/ssh-edge connect --sign --ssh-dir {ssh} %n\n"
            )),
            "{block}"
        );
        assert!(!block.contains("token"), "no token file: {block}");
        assert!(block.contains(&format!("exec \"/opt/ssh-edge sign --ssh-dir {ssh} %n\"")));
    }

    #[test]
    fn setup_removes_stored_tokens_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = state_dir(dir.path()).join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        std::fs::write(
            tokens.join("training-job-abc1234-0.ssh.baseten.co"),
            "old.jwt",
        )
        .unwrap();
        let config = setup(&options(dir.path())).unwrap();
        assert!(!tokens.exists(), "an older block's token files are removed");
        let first = std::fs::read_to_string(&config).unwrap();
        let key = std::fs::read(state_dir(dir.path()).join("id_ed25519")).unwrap();
        setup(&options(dir.path())).unwrap();
        assert_eq!(std::fs::read_to_string(&config).unwrap(), first);
        assert_eq!(
            std::fs::read(state_dir(dir.path()).join("id_ed25519")).unwrap(),
            key,
            "the key pair is kept"
        );
    }
}
