//! The deploy artefacts under deploy/ (and the README's "Deploying" section) kept true: each
//! is checked by the tool that consumes it (promtool, kubernetes-validate, hadolint,
//! systemd-analyze), against each other, and against the real edge (the metrics the alerts
//! and the dashboard query, the config the pod mounts, the image's health check).
//! A missing tool fails its test: `bash .ci/run` installs them all. The operator's docs too:
//! every config key and metric the code has is in the README and the example configs.

#[path = "common/process.rs"]
mod process;

#[path = "deploy/support.rs"]
mod support;

#[path = "deploy/promql.rs"]
mod promql;

#[path = "deploy/prometheus.rs"]
mod prometheus;

#[path = "deploy/live.rs"]
mod live;

#[path = "deploy/kubernetes.rs"]
mod kubernetes;

#[path = "deploy/image.rs"]
mod image;

#[path = "deploy/systemd.rs"]
mod systemd;

#[path = "deploy/docs.rs"]
mod docs;

#[test]
fn the_readme_deploying_section_follows_running_on_the_internet_and_covers_the_steps() {
    let readme = support::read(&support::repo().join("README.md"));
    let headings: Vec<&str> = readme.lines().filter(|l| l.starts_with("## ")).collect();
    let at = headings
        .iter()
        .position(|h| *h == "## Running on the internet")
        .expect("## Running on the internet");
    assert_eq!(headings.get(at + 1), Some(&"## Deploying"), "{headings:?}");
    let section = support::readme_section("Deploying");
    for needle in [
        "docker build -f deploy/Dockerfile",
        "kubectl apply -k deploy/kubernetes",
        "kubectl -n ssh-edge create secret",
        "deploy/prometheus/alerts.yml",
        "deploy/prometheus/prometheus.yml",
        "deploy/grafana/ssh-edge.json",
        "deploy/systemd/ssh-edge.service",
        "SIGHUP",
        "proxy_trusted_cidrs",
    ] {
        assert!(
            section.contains(needle),
            "README Deploying lacks {needle:?}"
        );
    }
}
