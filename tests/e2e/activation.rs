//! On-demand activation: `ssh-edge issuer` as the control plane, a workload whose sshd is not
//! running until the issuer's `on_activate` hook starts it, and the real `ssh` waiting at the
//! edge with progress banners. Also stopped and unknown workloads, the workload's session
//! expiry (with an extension while the session runs) and a control plane that is down.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use ssh_edge::config::RawRoute;

use crate::issuer::{Issuer, KEY_DEFAULT, new_key, ssh_via_issuer, start_issuer_on};
use crate::world::*;

const SLEEPY: &str = "training-job-sleepy1-0.ssh.baseten.co";
const STOPPED: &str = "training-job-done1-0.ssh.baseten.co";
const UNKNOWN: &str = "training-job-ghost1-0.ssh.baseten.co";
const EDGE_TOKEN: &str = "edge-token-for-the-control-plane";
const ADMIN_TOKEN: &str = "admin-token-for-the-control-plane";
const STOPPED_MESSAGE: &str = "training job done1 finished; start a new run to connect";

/// A world whose edge asks a real `ssh-edge issuer` about workloads; `sleepy1` sleeps (its
/// sshd on `sleepy_port` is started by the issuer's `on_activate`).
pub struct Wakeable {
    pub w: World,
    pub issuer: Issuer,
    pub sleepy_port: u16,
    /// Written by the sleepy workload's sshd when it starts: proof it was (not) woken.
    pub sleepy_pid_file: PathBuf,
    /// A certificate for sleepy1, done1, ghost1 and abc1234.
    pub key: PathBuf,
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

impl Wakeable {
    /// `wake_delay`: seconds the hook sleeps before starting sshd (so the wait shows).
    pub fn start(wake_delay: u32) -> Wakeable {
        Self::start_with(wake_delay, false, |_| {})
    }

    /// Like `start`, with the control plane on HTTPS (the lab's private CA) or not, and the
    /// edge's config adjusted first.
    pub fn start_with(
        wake_delay: u32,
        https: bool,
        adjust: impl FnOnce(&mut ssh_edge::config::RawConfig),
    ) -> Wakeable {
        let tokens = tempfile::tempdir().unwrap().keep();
        let token_file = tokens.join("edge-token");
        std::fs::write(&token_file, EDGE_TOKEN).unwrap();
        let issuer_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer_port = issuer_listener.local_addr().unwrap().port();
        let sleepy_port = ssh_edge::lab::free_port();
        let mut w = World::start_with(|raw| {
            raw.control_plane.url = Some(if https {
                // The lab's TLS CA sits beside its server certificate.
                let cert = raw
                    .tls
                    .cert_file
                    .clone()
                    .expect("the lab's TLS certificate");
                raw.control_plane.ca_file = Some(cert.with_file_name("tls-ca.pem"));
                format!("https://localhost:{issuer_port}")
            } else {
                format!("http://127.0.0.1:{issuer_port}")
            });
            raw.control_plane.token_file = Some(token_file.clone());
            raw.control_plane.expiry_refresh_secs = 2;
            raw.routes.insert(
                0,
                RawRoute {
                    kind: "training-job".into(),
                    match_fields: [("job_id".to_string(), "sleepy1".to_string())].into(),
                    backend: format!("127.0.0.1:{sleepy_port}"),
                    login_user: ssh_edge::lab::current_user(),
                    principal: "{job_id}".into(),
                    ..RawRoute::default()
                },
            );
            adjust(raw);
        });
        let sleepy = w.lab.sleeping_backend(sleepy_port, "sleepy1").unwrap();
        let on_activate = sleepy.start_command(wake_delay);
        let jobs = format!(
            r#"{{ job_id = "abc1234", project_id = "p1" }},
  {{ job_id = "sleepy1", project_id = "p1", trigger = "on_demand", on_activate = "{on_activate}" }},
  {{ job_id = "done1", project_id = "p1", state = "stopped", message = "{STOPPED_MESSAGE}" }}"#
        );
        let issuer = start_issuer_on(
            &w,
            issuer_listener,
            Some((EDGE_TOKEN, ADMIN_TOKEN)),
            &jobs,
            https,
        );
        let key = w.lab.path("wake_user");
        w.lab
            .issue_user_certificate(
                "wake_user",
                "waker@example",
                &["sleepy1", "done1", "ghost1", JOB],
                Duration::from_secs(600),
            )
            .unwrap();
        // Its sshd writes this PID file when it starts (the port could be any process's:
        // a free port picked earlier may be taken by a parallel test meanwhile).
        assert!(
            !sleepy.pid_file.exists(),
            "the sleepy workload's sshd runs before anyone woke it"
        );
        Wakeable {
            w,
            issuer,
            sleepy_port,
            sleepy_pid_file: sleepy.pid_file.clone(),
            key,
        }
    }

    /// One request to the issuer's admin routes; the JSON answer.
    pub fn admin(&self, method: &str, path: &str, body: &str) -> Value {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.issuer.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{method} {path}: {out}");
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"))
    }

    pub fn activations(&self, host: &str) -> u64 {
        self.admin("GET", &format!("/v1/admin/workloads/{host}"), "")["activations"]
            .as_u64()
            .expect("activations is a number")
    }

    /// `ssh` as a user runs it: LogLevel INFO (the lab's ssh_config says ERROR), at which
    /// OpenSSH prints banners.
    pub fn ssh(&self, via: Via, host: &str, command: &str) -> Output {
        self.w
            .ssh_as(&self.key, via, host, &["-o", "LogLevel=INFO"], command)
    }
}

/// A metric sample that must exist (a missing series fails, it is not 0).
pub fn metric(w: &World, name_and_labels: &str) -> u64 {
    metric_value(&w.metrics.render(), name_and_labels)
}

/// Waits until `cond` holds, failing the test after `timeout`.
fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn five_logins_on_two_fronts_wake_a_sleeping_workload_once_and_see_progress() {
    let k = Wakeable::start(3);
    let fronts = [
        Via::PlainSsh,
        Via::Connect,
        Via::PlainSsh,
        Via::Openssl,
        Via::PlainSsh,
    ];
    let outputs: Vec<Output> = std::thread::scope(|s| {
        let handles: Vec<_> = fronts
            .iter()
            .enumerate()
            .map(|(i, via)| {
                let k = &k;
                s.spawn(move || k.ssh(*via, SLEEPY, &format!("echo landed-{i}")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success() && stdout(out).contains(&format!("landed-{i}")),
            "login {i} via {:?} did not land: {}",
            fronts[i],
            stderr(out)
        );
        assert!(
            stderr(out)
                .contains("ssh-edge: waking training job sleepy1 (on-demand session) ... 0 s"),
            "login {i} via {:?} saw no progress banner: {}",
            fronts[i],
            stderr(out)
        );
        assert!(
            stderr(out).contains("ssh-edge: training job sleepy1 is up after"),
            "{}",
            stderr(out)
        );
    }
    // The hook sleeps 3 s: someone saw the elapsed time move.
    assert!(
        outputs
            .iter()
            .any(|o| stderr(o).contains("(on-demand session) ... 2 s")),
        "no progress after 2 s"
    );
    assert_eq!(k.activations(SLEEPY), 1, "exactly one on_activate run");
    // The edge deduplicated: one activate call for five logins on two fronts (the issuer
    // would also have started one run for five calls).
    assert_eq!(
        k.admin("GET", &format!("/v1/admin/workloads/{SLEEPY}"), "")["activate_requests"],
        1
    );
    k.w.wait_metric("ssh_edge_activations_total{outcome=\"ready\"}", 1);
    assert!(metric(&k.w, "ssh_edge_activation_seconds_count") == 1);
    // Awake now: the next login goes straight in, without a banner.
    let out = k.ssh(Via::PlainSsh, SLEEPY, "echo again");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("waking"), "{}", stderr(&out));
    assert_eq!(k.activations(SLEEPY), 1);
}

#[test]
fn stopped_and_unknown_workloads_give_the_control_planes_message() {
    // Over HTTPS with a private CA, as a control plane on another host would be reached.
    let k = Wakeable::start_with(0, true, |_| {});
    for via in [Via::PlainSsh, Via::Connect] {
        let out = k.ssh(via, STOPPED, "echo no");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(&format!("ssh-edge: {STOPPED}: {STOPPED_MESSAGE}")),
            "{via:?}: {}",
            stderr(&out)
        );
        let out = k.ssh(via, UNKNOWN, "echo no");
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains(&format!("no workload named {UNKNOWN}")),
            "{via:?}: {}",
            stderr(&out)
        );
    }
    k.w.wait_metric(
        "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"workload_stopped\"}",
        1,
    );
    k.w.wait_metric(
        "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"workload_unknown\"}",
        1,
    );
    // Nobody was woken.
    assert!(!k.sleepy_pid_file.exists());
}

#[test]
fn the_installed_helper_lands_on_a_sleeping_workload_on_the_first_or_the_next_try() {
    // The hook takes 10 s: longer than front B holds the status byte (8 s).
    let k = Wakeable::start(10);
    let key = new_key(&k.w, "helper_wake_user");
    let first = ssh_via_issuer(&k.w, &k.issuer, KEY_DEFAULT, &key, SLEEPY, "echo first");
    if first.status.success() {
        assert!(stdout(&first).contains("first"));
    } else {
        // A clean refusal: the helper read 0x01 before its 10 s socket timeout (which would
        // end it with a Python traceback instead of this line).
        assert!(
            stderr(&first).contains("rejected"),
            "the helper did not get a clean 0x01: {}",
            stderr(&first)
        );
        k.w.wait_metric(
            "ssh_edge_connections_rejected_total{listener=\"tls\",reason=\"workload_waking\"}",
            1,
        );
    }
    // Signing already started the activation; the wake-up went on after the refusal.
    wait_for("the workload to wake", Duration::from_secs(60), || {
        port_open(k.sleepy_port)
    });
    let next = ssh_via_issuer(&k.w, &k.issuer, KEY_DEFAULT, &key, SLEEPY, "echo next");
    assert!(next.status.success(), "{}", stderr(&next));
    assert!(stdout(&next).contains("next"));
    assert_eq!(k.activations(SLEEPY), 1);
}

#[test]
fn the_workload_expiry_warns_then_ends_a_session_and_an_extension_moves_it() {
    let k = Wakeable::start(0);
    // Expires in 20 s: a warning at about 10 s, the end at 20 s.
    let expires = ssh_edge::time::unix_now() + 20;
    k.admin(
        "POST",
        &format!("/v1/admin/workloads/{HOST}/expiry"),
        &format!("{{\"session_expires_at\": {expires}}}"),
    );
    let out = k.ssh(Via::PlainSsh, HOST, "echo open; sleep 60; echo finished");
    assert!(stdout(&out).contains("open"), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("finished"),
        "the session outlived its expiry"
    );
    let err = stderr(&out);
    let warn = err
        .find("ssh-edge: this session ends in")
        .unwrap_or_else(|| panic!("no warning: {err}"));
    let end = err
        .find("session ended: the workload's session expired at")
        .unwrap_or_else(|| panic!("no end message: {err}"));
    assert!(warn < end, "the warning came after the end: {err}");
    // The edge counts the end just after the client sees it.
    k.w.wait_metric(
        "ssh_edge_sessions_ended_total{reason=\"workload_expiry\"}",
        1,
    );

    // Again, 20 s; once the session is open, extend it by 40 s: it outlives the first cut-off.
    let expires = ssh_edge::time::unix_now() + 20;
    k.admin(
        "POST",
        &format!("/v1/admin/workloads/{HOST}/expiry"),
        &format!("{{\"session_expires_at\": {expires}}}"),
    );
    let done = std::thread::scope(|s| {
        let session = s.spawn(|| k.ssh(Via::PlainSsh, HOST, "echo open; sleep 28; echo survived"));
        wait_for("the session to open", Duration::from_secs(30), || {
            metric(&k.w, "ssh_edge_sessions_active") == 1
        });
        k.admin(
            "POST",
            &format!("/v1/admin/workloads/{HOST}/expiry"),
            "{\"extend_secs\": 40}",
        );
        session.join().unwrap()
    });
    assert!(
        stdout(&done).contains("survived"),
        "the extension did not move the end: {}",
        stderr(&done)
    );
    k.w.wait_metric(
        "ssh_edge_sessions_ended_total{reason=\"workload_expiry\"}",
        1,
    );
}

#[test]
fn a_control_plane_that_is_down_allows_or_denies_as_configured() {
    let dead = ssh_edge::lab::free_port();
    for (decision, lands) in [("allow", true), ("deny", false)] {
        let w = World::start_with(|raw| {
            raw.control_plane.url = Some(format!("http://127.0.0.1:{dead}"));
            raw.control_plane.on_unavailable = decision.into();
        });
        let out = w.ssh(Via::PlainSsh, HOST, &[], "echo landed");
        assert_eq!(out.status.success(), lands, "{decision}: {}", stderr(&out));
        if lands {
            assert!(stdout(&out).contains("landed"));
        } else {
            assert!(
                stderr(&out)
                    .contains("the control plane that knows this workload's state is unavailable"),
                "{}",
                stderr(&out)
            );
        }
        assert_eq!(
            metric(
                &w,
                &format!("ssh_edge_control_plane_unavailable_total{{decision=\"{decision}\"}}")
            ),
            1
        );
        w.wait_metric(
            "ssh_edge_control_plane_requests_total{outcome=\"unreachable\"}",
            1,
        );
    }
}

#[test]
fn a_workload_that_does_not_come_up_in_time_is_refused_with_a_message() {
    // The hook takes 30 s; the edge waits 2.
    let k = Wakeable::start_with(30, false, |raw| {
        raw.control_plane.activation_timeout_secs = 2
    });
    let out = k.ssh(Via::PlainSsh, SLEEPY, "echo no");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("(on-demand session) ... 0 s"), "{err}");
    assert!(
        err.contains(&format!(
            "ssh-edge: {SLEEPY}: the workload did not come up within 2 s; try again later"
        )),
        "{err}"
    );
    k.w.wait_metric("ssh_edge_activations_total{outcome=\"timeout\"}", 1);
    k.w.wait_metric(
        "ssh_edge_connections_rejected_total{listener=\"ssh\",reason=\"activation_timeout\"}",
        1,
    );
}
