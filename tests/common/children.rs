//! Helper processes of the e2e and door tests: stopped when dropped, and a loopback DNS server.

use std::process::{Command, Stdio};
use std::time::Duration;

/// A child process stopped when dropped (an extra sshd, dnsmasq, …).
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// dnsmasq on 127.0.0.1:`port` answering for `*.test` only, from a config written into `dir`
/// with `extra` lines (records, logging) appended.
pub fn start_dnsmasq(dir: &std::path::Path, port: u16, extra: &str) -> Running {
    let conf = dir.join("dnsmasq.conf");
    std::fs::write(
        &conf,
        format!(
            "port={port}\nuser=root\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\n\
             local=/test/\npid-file={}\n{extra}",
            dir.join("dnsmasq.pid").display()
        ),
    )
    .expect("dnsmasq config written");
    let exe = ["/usr/sbin/dnsmasq", "dnsmasq"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("dnsmasq");
    let child = Command::new(exe)
        .arg("--keep-in-foreground")
        .arg(format!("--conf-file={}", conf.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq runs (.ci/run installs dnsmasq-base)");
    // dnsmasq listens on UDP and TCP: the TCP port says it is up.
    assert!(
        ssh_edge::lab::wait_for_port(port, Duration::from_secs(20)),
        "dnsmasq did not start"
    );
    Running(child)
}
