//! Backend host certificates: sshd with a `HostCertificate` from a trusted host CA is accepted
//! with no known_hosts entry for it; a certificate from another CA, or for another name, is
//! refused with a message saying which, and counted as a host-key failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ssh_edge::config::RawRoute;
use ssh_edge::lab::{free_port, wait_for_port};

use crate::children::Running;
use crate::world::*;

fn keygen(args: &[&str]) {
    let out = Command::new("ssh-keygen").args(args).output_bounded();
    assert!(
        out.status.success(),
        "ssh-keygen {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA key pair `name` in `dir`; returns its public key line.
fn make_ca(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        path.to_str().unwrap(),
    ]);
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

/// The lab sshd's host key certified by `ca` for `principals`, as `<name>-cert.pub`.
fn host_cert(dir: &Path, name: &str, ca: &str, principals: &str) -> PathBuf {
    let public = Command::new("ssh-keygen")
        .args(["-y", "-f"])
        .arg(dir.join("sshd_host_ed25519"))
        .output_bounded()
        .stdout;
    let pubfile = dir.join(format!("{name}.pub"));
    std::fs::write(&pubfile, public).unwrap();
    keygen(&[
        "-q",
        "-s",
        dir.join(ca).to_str().unwrap(),
        "-I",
        name,
        "-h",
        "-n",
        principals,
        "-V",
        "-5m:+1h",
        pubfile.to_str().unwrap(),
    ]);
    dir.join(format!("{name}-cert.pub"))
}

/// Another sshd from the lab's config, presenting `cert`.
fn sshd_with(dir: &Path, port: u16, cert: &Path) -> Running {
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .args(["-p", &port.to_string(), "-o"])
        .arg(format!("HostCertificate={}", cert.display()))
        .arg("-o")
        .arg(format!(
            "PidFile={}",
            dir.join(format!("sshd-{port}.pid")).display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for_port(port, Duration::from_secs(10)),
        "sshd on {port}"
    );
    Running(child)
}

fn lab_dir(raw: &ssh_edge::config::RawConfig) -> PathBuf {
    raw.backend
        .known_hosts_file
        .as_ref()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf()
}

fn route(template: &RawRoute, job: &str, port: u16) -> RawRoute {
    RawRoute {
        kind: "training-job".into(),
        match_fields: [("job_id".to_string(), job.to_string())].into(),
        backend: format!("127.0.0.1:{port}"),
        ..template.clone()
    }
}

#[test]
fn host_certificates_from_trusted_cas_are_accepted_and_others_refused() {
    let (good, other_ca, other_name) = (free_port(), free_port(), free_port());
    let mut sshds = Vec::new();
    let w = World::start_with(|raw| {
        let dir = lab_dir(raw);
        let host_ca = make_ca(&dir, "host_ca");
        make_ca(&dir, "other_host_ca");
        sshds.push(sshd_with(
            &dir,
            good,
            &host_cert(&dir, "good", "host_ca", "127.0.0.1"),
        ));
        sshds.push(sshd_with(
            &dir,
            other_ca,
            &host_cert(&dir, "otherca", "other_host_ca", "127.0.0.1"),
        ));
        sshds.push(sshd_with(
            &dir,
            other_name,
            &host_cert(&dir, "othername", "host_ca", "other.example"),
        ));
        // No known_hosts entry for any of them: only the host CA vouches.
        let empty = dir.join("empty_known_hosts");
        std::fs::write(&empty, "").unwrap();
        raw.backend.known_hosts_file = Some(empty);
        raw.backend.host_cas = vec![host_ca];
        let template = raw.routes[0].clone();
        raw.routes = vec![
            route(&template, JOB, good),
            route(&template, "other99", other_ca),
            route(&template, "m1x2y3", other_name),
        ];
    });
    let out = w.ssh(Via::PlainSsh, HOST, &[], "echo $SSH_CONNECTION");
    assert!(
        stdout(&out).trim_end().ends_with(&format!(" {good}")),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let key = w.keygen_cert("others", "user_ca", Some("other99,m1x2y3"), "+10m", &[]);
    let refused = |job: &str| {
        let host = format!("training-job-{job}-0.ssh.baseten.co");
        let out = w.ssh_as(&key, Via::PlainSsh, &host, &[], "echo in");
        assert_eq!(out.status.code(), Some(255), "{job}: {}", stdout(&out));
        stderr(&out)
    };
    let err = refused("other99");
    assert!(
        err.contains("host key rejected")
            && err.contains("which is not a trusted host CA for 127.0.0.1"),
        "{err}"
    );
    let err = refused("m1x2y3");
    assert!(
        err.contains("host key rejected") && err.contains("is for [other.example], not 127.0.0.1"),
        "{err}"
    );
    assert_eq!(
        w.metric("ssh_edge_backend_failures_total{reason=\"host_key\"}"),
        2
    );
}

#[test]
fn cert_authority_lines_in_known_hosts_vouch_for_their_patterns() {
    let (covered, elsewhere) = (free_port(), free_port());
    let mut sshds = Vec::new();
    let w = World::start_with(|raw| {
        let dir = lab_dir(raw);
        let ca = make_ca(&dir, "host_ca");
        sshds.push(sshd_with(
            &dir,
            covered,
            &host_cert(&dir, "a", "host_ca", "127.0.0.1"),
        ));
        sshds.push(sshd_with(
            &dir,
            elsewhere,
            &host_cert(&dir, "b", "host_ca", "127.0.0.1"),
        ));
        // The CA vouches for 127.0.0.1 on the first port only.
        let known = dir.join("ca_known_hosts");
        std::fs::write(
            &known,
            format!("@cert-authority [127.0.0.1]:{covered},*.training.test {ca}\n"),
        )
        .unwrap();
        raw.backend.known_hosts_file = Some(known);
        let template = raw.routes[0].clone();
        raw.routes = vec![
            route(&template, JOB, covered),
            route(&template, "m1x2y3", elsewhere),
        ];
    });
    let out = w.ssh(Via::PlainSsh, HOST, &[], "echo landed");
    assert_eq!(stdout(&out), "landed\n", "{}", stderr(&out));
    let out = w.ssh(
        Via::PlainSsh,
        "training-job-m1x2y3-0.ssh.baseten.co",
        &[],
        "echo in",
    );
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("not a trusted host CA for 127.0.0.1"),
        "{}",
        stderr(&out)
    );
}
