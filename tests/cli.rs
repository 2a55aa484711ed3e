//! The binary's configuration commands: `check-config` lists every problem at once, and
//! `SSH_EDGE_*` variables override the file.

use std::process::Command;

use ssh_edge::lab::Lab;

fn ssh_edge() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ssh-edge"));
    for (k, _) in std::env::vars() {
        if k.starts_with("SSH_EDGE_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn check_config_lists_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[listen]
ssh = "not-an-address"

[hosts]
kinds = [{ name = "training-job", template = "training-job-{job_id" }]

[auth]
force_command = "sometimes"

[remotes.default]
trusted_user_cas = ["not a key"]

[[routes]]
kind = "notebook"
backend = "{job_id}:22"
login_user = "baseten"
principal = "{job_id}"
"#,
    )
    .unwrap();
    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for expected in [
        "listen.ssh: \"not-an-address\" is not an address",
        "ssh.host_key_files: at least one host key is required",
        "hosts:",
        "auth.force_command: \"sometimes\"",
        "remotes.default.trusted_user_cas[0]",
        "routes[0].kind: unknown kind \"notebook\"",
        "backend: set edge_ca_key_file",
        "backend: no way to verify backend host keys",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        text.contains("invalid configuration (8 problems)") || text.contains("problems)"),
        "{text}"
    );
}

#[test]
fn unknown_fields_are_reported_with_their_name() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[listen]\nssh_port = 22\n").unwrap();
    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("ssh_port"), "{text}");
}

#[test]
fn environment_overrides_the_file_and_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).unwrap();
    let mut raw = lab.edge_config("127.0.0.1:0", "127.0.0.1:0").unwrap();
    raw.listen.ssh = Some("bogus".into());
    let file = lab.write_config(&raw).unwrap();

    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen.ssh: \"bogus\""));

    // The variable fixes it; SSH_EDGE_CONFIG names the file instead of --config.
    let out = ssh_edge()
        .arg("check-config")
        .env("SSH_EDGE_CONFIG", &file)
        .env("SSH_EDGE_LISTEN__SSH", "127.0.0.1:2222")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
}

#[test]
fn the_example_config_has_no_problems_but_its_missing_key_files() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");
    let out = ssh_edge()
        .args(["check-config", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("- "))
        .collect();
    assert!(
        !problems.is_empty(),
        "expected missing-file problems: {text}"
    );
    for p in problems {
        assert!(
            p.contains("/etc/ssh-edge/")
                && (p.contains("No such file")
                    || p.contains("not a readable")
                    || p.contains("not found")),
            "unexpected problem in config/example.toml: {p}"
        );
    }
}
