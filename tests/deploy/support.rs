//! Shared by the deploy tests: paths, external tools (never skipped: missing means failed),
//! YAML through python3 + PyYAML, and the edge.toml of the Kubernetes ConfigMap.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under deploy/.
pub fn deploy(rel: &str) -> PathBuf {
    repo().join("deploy").join(rel)
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn edge_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ssh-edge"))
}

/// An external tool on PATH. A missing tool fails the test with what to install: the tests
/// are never skipped (`bash .ci/run` installs every one of them).
pub fn tool(name: &str, install: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate)
            && meta.is_file()
            && meta.permissions().mode() & 0o111 != 0
        {
            return candidate;
        }
    }
    panic!("{name} is not on PATH: install {install} (bash .ci/run does)");
}

pub fn promtool() -> PathBuf {
    tool("promtool", "the Debian package prometheus")
}

/// stdout and stderr of a finished command, for messages and matching.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` with a hard timeout; returns the output whatever the exit status.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    crate::process::run_with_timeout(cmd, timeout)
}

/// Runs `cmd` with a hard timeout and fails the test unless it exits 0; returns its output.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> String {
    let shown = format!("{cmd:?}");
    let out = run(cmd, timeout);
    let all = text(&out);
    assert!(
        out.status.success(),
        "{shown} failed ({}):\n{all}",
        out.status
    );
    all
}

/// Every document of a YAML file as JSON (python3 with PyYAML, which kubernetes-validate
/// depends on; no YAML crate in this workspace).
pub fn yaml_docs(path: &Path) -> Vec<Value> {
    let python = tool("python3", "python3 with PyYAML (pip install PyYAML)");
    let out = run(
        Command::new(python)
            .arg("-c")
            .arg(
                "import json, sys, yaml\n\
                 docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                 json.dump(docs, sys.stdout)",
            )
            .arg(path),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "cannot read {} as YAML (python3 needs PyYAML: pip install PyYAML):\n{}",
        path.display(),
        text(&out)
    );
    match serde_json::from_slice(&out.stdout) {
        Ok(Value::Array(docs)) => docs,
        other => panic!("{}: unexpected YAML conversion {other:?}", path.display()),
    }
}

/// The only document of a YAML file.
pub fn yaml_doc(path: &Path) -> Value {
    let mut docs = yaml_docs(path);
    assert_eq!(docs.len(), 1, "{} should hold one document", path.display());
    docs.remove(0)
}

/// `edge.toml` as the ConfigMap in deploy/kubernetes/configmap.yaml carries it.
pub fn configmap_edge_toml() -> String {
    let cm = yaml_doc(&deploy("kubernetes/configmap.yaml"));
    assert_eq!(cm["kind"], "ConfigMap");
    cm["data"]["edge.toml"]
        .as_str()
        .expect("configmap.yaml has data.edge.toml")
        .to_string()
}

/// The port of a "host:port" listen address.
pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{addr:?} has no port"))
}

/// GitHub's anchors for the README's headings (`## Running for real` → `running-for-real`).
pub fn readme_anchors() -> BTreeSet<String> {
    read(&repo().join("README.md"))
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect()
        })
        .collect()
}

/// The text of one `## ` section of the README, heading included.
pub fn readme_section(heading: &str) -> String {
    let readme = read(&repo().join("README.md"));
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no \"## {heading}\" section"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    rest[..end].to_string()
}

/// An `ssh-edge` command without any SSH_EDGE_* variable of the test's environment.
pub fn ssh_edge() -> Command {
    let mut c = Command::new(edge_exe());
    for (k, _) in std::env::vars() {
        if k.starts_with("SSH_EDGE_") {
            c.env_remove(k);
        }
    }
    c
}
