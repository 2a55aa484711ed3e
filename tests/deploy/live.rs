//! Against the real binary: every metric the alerts and the dashboard query is one the edge
//! exports, and the image's HEALTHCHECK command gets a 200 from /healthz.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ssh_edge::lab::{Lab, free_port, wait_for_port};

use crate::promql::selectors;
use crate::support::{read, readme_section, run, ssh_edge, text, tool};

/// `ssh-edge run` on a lab config (TLS on a random port, front C and admin on free ports).
struct RunningEdge {
    child: Child,
    lab: Lab,
    ssh: u16,
    admin: u16,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl RunningEdge {
    fn start() -> RunningEdge {
        let tmp = tempfile::tempdir().unwrap();
        let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).expect("lab (needs sshd)");
        let (ssh, admin) = (free_port(), free_port());
        let mut raw = lab
            .edge_config("127.0.0.1:0", &format!("127.0.0.1:{ssh}"))
            .unwrap();
        raw.listen.admin = Some(format!("127.0.0.1:{admin}"));
        let file = lab.write_config(&raw).unwrap();
        let log = tmp.path().join("edge.log");
        let child = ssh_edge()
            .args(["run", "--config"])
            .arg(&file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let edge = RunningEdge {
            child,
            lab,
            ssh,
            admin,
            log,
            _tmp: tmp,
        };
        assert!(
            wait_for_port(admin, Duration::from_secs(30))
                && wait_for_port(ssh, Duration::from_secs(5)),
            "edge did not start:\n{}",
            edge.log()
        );
        edge
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        http_get(self.admin, "/metrics")
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// `# TYPE name kind` lines of an exposition.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect()
}

/// The label sets of one series name in an exposition.
fn series_labels(exposition: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if rest.starts_with(' ') {
                return Some(BTreeMap::new());
            }
            let body = rest.strip_prefix('{')?.split_once('}')?.0;
            Some(
                body.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// The family a queried series belongs to: `x_bucket`, `x_sum`, `x_count` of a histogram
/// `x` are series of `x`.
fn family_of<'a>(metric: &'a str, fams: &BTreeMap<String, String>) -> Option<&'a str> {
    if fams.contains_key(metric) {
        return Some(metric);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = metric.strip_suffix(suffix)?;
        (fams.get(base).map(String::as_str) == Some("histogram")).then_some(base)
    })
}

/// Counters without fixed labels (rejections, channels) have no series until something
/// happens: a junk connection to front C and one real login with a session channel.
fn make_traffic(edge: &RunningEdge) {
    let mut junk = TcpStream::connect(("127.0.0.1", edge.ssh)).unwrap();
    let _ = junk.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = junk.write_all(b"this is not SSH\r\n");
    let mut sink = Vec::new();
    let _ = junk.read_to_end(&mut sink);

    let key = edge
        .lab
        .issue_user_certificate(
            "user",
            "deploy-test",
            &["abc1234"],
            Duration::from_secs(600),
        )
        .unwrap();
    let config = edge
        .lab
        .write_ssh_config(&key, &crate::support::edge_exe(), 1, edge.ssh)
        .unwrap();
    let ssh = tool("ssh", "openssh-client");
    let out = run(
        Command::new(ssh).arg("-F").arg(&config).args([
            "-o",
            "BatchMode=yes",
            "training-job-abc1234-0@127.0.0.1",
            "true",
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "login through the edge failed: {}\nedge log:\n{}",
        text(&out),
        edge.log()
    );
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

#[test]
fn every_metric_in_the_alerts_and_the_dashboard_is_exported_by_a_running_edge() {
    let edge = RunningEdge::start();
    let fresh = families(&edge.metrics());
    assert!(
        fresh.keys().any(|k| k.starts_with("ssh_edge_")),
        "no ssh_edge metrics from /metrics:\n{}",
        edge.metrics()
    );
    make_traffic(&edge);
    let mut exposition = String::new();
    assert!(
        wait_for(Duration::from_secs(20), || {
            exposition = edge.metrics();
            let f = families(&exposition);
            f.contains_key("ssh_edge_connections_rejected_total")
                && f.contains_key("ssh_edge_channels_total")
        }),
        "rejection and channel counters never appeared:\n{exposition}"
    );
    let fams = families(&exposition);

    let mut queries: Vec<(String, String)> = Vec::new();
    for e in crate::prometheus::alert_exprs() {
        queries.push(("deploy/prometheus/alerts.yml".into(), e));
    }
    for e in crate::prometheus::dashboard_exprs() {
        queries.push(("deploy/grafana/ssh-edge.json".into(), e));
    }
    let mut missing = BTreeSet::new();
    let mut checked = BTreeSet::new();
    for (file, expr) in &queries {
        for sel in selectors(expr) {
            if sel.metric == "up" {
                continue;
            }
            assert!(
                sel.metric.starts_with("ssh_edge_"),
                "{file}: {} is neither an ssh_edge_* metric nor up: {expr}",
                sel.metric
            );
            let Some(family) = family_of(&sel.metric, &fams) else {
                missing.insert(format!("{file}: {}", sel.metric));
                continue;
            };
            checked.insert(family.to_string());
            // A label value matched exactly must be one the edge exports for that series.
            let series = series_labels(&exposition, &sel.metric);
            for (label, op, value) in &sel.matchers {
                if op != "=" || label == "job" || label == "instance" || value.contains('$') {
                    continue;
                }
                if series.iter().any(|s| s.contains_key(label)) {
                    assert!(
                        series.iter().any(|s| s.get(label) == Some(value)),
                        "{file}: {}{{{label}=\"{value}\"}}: the edge exports no such series",
                        sel.metric
                    );
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics queried but not exported by the edge (fix the artefact):\n{}\nexported: {:?}",
        missing.into_iter().collect::<Vec<_>>().join("\n"),
        fams.keys().collect::<Vec<_>>()
    );
    assert!(
        checked.len() >= 15,
        "only {} families checked: {checked:?}",
        checked.len()
    );

    // Rejection reasons an alert matches by name are reasons the README documents.
    let reasons = readme_section("Running on the internet");
    for (file, expr) in &queries {
        for sel in selectors(expr) {
            for (label, op, value) in &sel.matchers {
                if sel.metric == "ssh_edge_connections_rejected_total" && label == "reason" {
                    let values: Vec<&str> = if op == "=~" {
                        value.split('|').collect()
                    } else {
                        vec![value.as_str()]
                    };
                    for v in values {
                        assert!(
                            reasons.contains(&format!("| `{v}` |")),
                            "{file}: rejection reason {v:?} is not in README's table"
                        );
                    }
                }
            }
        }
    }
}

/// The HEALTHCHECK of deploy/Dockerfile as an argv, with the admin port it assumes.
fn healthcheck() -> (Vec<String>, u16) {
    let dockerfile = read(&crate::support::deploy("Dockerfile")).replace("\\\n", " ");
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK"))
        .expect("a HEALTHCHECK in deploy/Dockerfile");
    let json = line
        .split_once(" CMD ")
        .expect("HEALTHCHECK … CMD [..]")
        .1
        .trim();
    let argv: Vec<String> = serde_json::from_str(json).expect("HEALTHCHECK CMD in exec form");
    let port = argv
        .iter()
        .find_map(|a| a.split("/dev/tcp/127.0.0.1/").nth(1))
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .expect("the HEALTHCHECK asks 127.0.0.1:<port>");
    (argv, port)
}

#[test]
fn the_image_healthcheck_passes_against_a_running_edge_and_fails_without_one() {
    let (argv, port) = healthcheck();
    let admin_port = crate::support::port_of(
        toml::from_str::<toml::Value>(&crate::support::configmap_edge_toml()).unwrap()["listen"]
            ["admin"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        port, admin_port,
        "HEALTHCHECK port vs listen.admin of the ConfigMap"
    );
    let bash = tool(&argv[0], "bash");
    let with_port = |p: u16| -> Vec<String> {
        argv[1..]
            .iter()
            .map(|a| a.replace(&format!("/127.0.0.1/{port}"), &format!("/127.0.0.1/{p}")))
            .collect()
    };

    let edge = RunningEdge::start();
    let out = run(
        Command::new(&bash).args(with_port(edge.admin)),
        Duration::from_secs(20),
    );
    assert!(
        out.status.success(),
        "HEALTHCHECK failed against a running edge: {}",
        text(&out)
    );

    let closed = free_port();
    let out = run(
        Command::new(&bash).args(with_port(closed)),
        Duration::from_secs(20),
    );
    assert!(
        !out.status.success(),
        "HEALTHCHECK passed with nothing listening"
    );
    // An admin endpoint that answers, but not 200, fails too.
    let out = run(
        Command::new(&bash).args(
            with_port(edge.admin)
                .iter()
                .map(|a| a.replace("/healthz", "/nonexistent")),
        ),
        Duration::from_secs(20),
    );
    assert!(!out.status.success(), "HEALTHCHECK passed on a 404");
}
