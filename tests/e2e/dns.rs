//! Backend names through a real DNS server (dnsmasq on a loopback port): an A record and an
//! SRV record route to two different sshds, NXDOMAIN tells the user there is no such workload,
//! and repeated logins within the TTL send one query.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ssh_edge::config::RawRoute;
use ssh_edge::lab::{free_port, wait_for_port};

use crate::children::Running;
use crate::world::*;

/// dnsmasq answering `records` for `*.test`, logging each query; returns the log's path.
fn dnsmasq(dir: &Path, port: u16, records: &str) -> (Running, PathBuf) {
    let log = dir.join("dnsmasq.log");
    let running = crate::children::start_dnsmasq(
        dir,
        port,
        &format!(
            "no-negcache\nlocal-ttl=10\nlog-queries\nlog-facility={}\n{records}",
            log.display()
        ),
    );
    (running, log)
}

/// How many queries of `kind` for `name` dnsmasq logged.
fn queries(log: &Path, kind: &str, name: &str) -> usize {
    let needle = format!("query[{kind}] {name} ");
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// The server port of the sshd the session landed on, from `$SSH_CONNECTION`.
fn landed_on(w: &World, via: Via, host: &str, key: Option<&Path>) -> Result<u16, String> {
    let key = key.unwrap_or(&w.user_key);
    let out = w.ssh_as(key, via, host, &[], "echo $SSH_CONNECTION");
    let text = stdout(&out);
    text.split_whitespace()
        .nth(3)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("{}{}", text, stderr(&out)))
}

#[test]
fn a_and_srv_records_route_to_their_sshds_and_nxdomain_says_no_such_workload() {
    let dns_port = free_port();
    let second_port = free_port();
    let mut dir = None;
    let mut second_sshd = None;
    let w = World::start_with(|raw| {
        let lab_dir = raw
            .backend
            .known_hosts_file
            .as_ref()
            .and_then(|p| p.parent())
            .unwrap()
            .to_path_buf();
        let first_port: u16 = raw.routes[0]
            .backend
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap();
        // A second sshd: the lab's own config on another port.
        second_sshd = Some(Running(
            Command::new("/usr/sbin/sshd")
                .args(["-D", "-e", "-f"])
                .arg(lab_dir.join("sshd_config"))
                .args(["-p", &second_port.to_string()])
                .arg("-o")
                .arg(format!("PidFile={}", lab_dir.join("sshd2.pid").display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        ));
        // Host keys are checked under the names the edge connected to.
        let key = std::fs::read_to_string(lab_dir.join("backend_known_hosts")).unwrap();
        let key = key.split_once(' ').unwrap().1.trim();
        let known = lab_dir.join("dns_known_hosts");
        std::fs::write(
            &known,
            format!(
                "[abc1234-0.training.test]:{first_port} {key}\n[node-b.training.test]:{second_port} {key}\n"
            ),
        )
        .unwrap();
        raw.backend.known_hosts_file = Some(known);
        raw.dns.nameservers = vec![format!("127.0.0.1:{dns_port}")];
        // Answers live 6 s here (dnsmasq says 10), and a dead DNS server is given up on fast.
        raw.dns.max_ttl_secs = 6;
        raw.dns.timeout_ms = 300;
        raw.dns.attempts = 1;
        let template = raw.routes[0].clone();
        raw.routes = vec![
            RawRoute {
                kind: "training-job".into(),
                backend: format!("{{job_id}}-{{node}}.training.test:{first_port}"),
                principal: "{job_id}".into(),
                ..template.clone()
            },
            RawRoute {
                kind: "model".into(),
                backend: "srv:_ssh._tcp.{model_id}.models.test".into(),
                principal: "{model_id}".into(),
                ..template
            },
        ];
        dir = Some((lab_dir, first_port));
    });
    let (lab_dir, first_port) = dir.unwrap();
    assert!(
        wait_for_port(second_port, Duration::from_secs(10)),
        "second sshd"
    );
    let (_dns, log) = dnsmasq(
        &lab_dir,
        dns_port,
        &format!(
            "host-record=abc1234-0.training.test,127.0.0.1\n\
             host-record=node-b.training.test,127.0.0.1\n\
             srv-host=_ssh._tcp.m1x2y3.models.test,node-b.training.test,{second_port},0,0\n"
        ),
    );

    // The A record: three logins land on the first sshd; DNS is asked once.
    for via in [Via::PlainSsh, Via::Connect, Via::PlainSsh] {
        assert_eq!(landed_on(&w, via, HOST, None), Ok(first_port), "{via:?}");
    }
    assert_eq!(queries(&log, "A", "abc1234-0.training.test"), 1);
    assert!(w.metric("ssh_edge_dns_lookups_total{outcome=\"cached\"}") >= 2);
    assert!(w.metric("ssh_edge_dns_lookups_total{outcome=\"resolved\"}") >= 1);

    // The SRV record: host and port from DNS, the second sshd.
    let model = "model-m1x2y3-d1.ssh.baseten.co";
    for _ in 0..2 {
        assert_eq!(landed_on(&w, Via::PlainSsh, model, None), Ok(second_port));
    }
    assert_eq!(queries(&log, "SRV", "_ssh._tcp.m1x2y3.models.test"), 1);

    // NXDOMAIN: the user is told, and the name is not asked again at once.
    let nx_key = w.keygen_cert("nx", "user_ca", Some("zzz999"), "+10m", &[]);
    let nx_host = "training-job-zzz999-0.ssh.baseten.co";
    for _ in 0..2 {
        let out = w.ssh_as(&nx_key, Via::PlainSsh, nx_host, &[], "echo in");
        assert_eq!(out.status.code(), Some(255));
        let err = stderr(&out);
        assert!(
            err.contains("no such workload: backend zzz999-0.training.test is not in DNS"),
            "{err}"
        );
    }
    assert_eq!(queries(&log, "A", "zzz999-0.training.test"), 1);
    assert!(w.metric("ssh_edge_dns_lookups_total{outcome=\"nxdomain\"}") >= 1);
    assert!(w.metric("ssh_edge_dns_lookups_total{outcome=\"negative_cached\"}") >= 1);
    assert!(w.metric("ssh_edge_backend_failures_total{reason=\"not_found\"}") >= 2);

    // A DNS outage does not break a workload already cached: its answer is used past the TTL.
    drop(_dns);
    let expired = Instant::now() + Duration::from_millis(6500);
    while Instant::now() < expired {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(landed_on(&w, Via::PlainSsh, HOST, None), Ok(first_port));
    assert!(w.metric("ssh_edge_dns_lookups_total{outcome=\"stale\"}") >= 1);
    drop(second_sshd);
}
