//! `ssh-edge demo`: the lab (throwaway CAs, keys, a real sshd), the edge on loopback ports,
//! and `ssh-edge issuer` in-process as its control plane with one workload that sleeps until
//! the first login wakes it. Prints what to paste.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use ssh_edge::config;
use ssh_edge::lab::Lab;
use ssh_edge::server::{self, ConfigSource, Server};

/// The demo's front-B token file lasts as long as a working day of trying it.
const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(8 * 3600);

pub async fn demo(dir: Option<PathBuf>, tls_port: u16, ssh_port: u16) -> anyhow::Result<()> {
    let (dir, keep) = match dir {
        Some(d) => (d, true),
        None => (
            std::env::temp_dir().join(format!("ssh-edge-demo-{}", std::process::id())),
            false,
        ),
    };
    let mut lab = Lab::create(&dir, &["abc1234", "m1x2y3"])?;
    lab.keep = keep;
    let mut raw = lab.edge_config(
        &format!("127.0.0.1:{tls_port}"),
        &format!("127.0.0.1:{ssh_port}"),
    )?;
    let control_plane = demo_control_plane(&mut lab, &mut raw)?;
    // The demo prints one long-lived token file that its commands and the benches reuse; a
    // deployment keeps the defaults (single use, the issuer's 600 s).
    raw.token.single_use = false;
    raw.token.max_lifetime_secs = DEMO_TOKEN_LIFETIME.as_secs();
    // SSH_EDGE_* variables apply on top, e.g. SSH_EDGE_BACKEND__MULTIPLEX=true.
    let raw = config::with_env_overrides(raw)?;
    let config_path = lab.write_config(&raw)?;
    let config = config::validate(&raw)?;
    server::raise_open_files_limit();
    // The demo reloads like the edge does: SIGHUP or an edit of its edge.toml.
    let source = ConfigSource {
        path: Some(config_path.clone()),
        watch: raw.reload.clone(),
    };
    let server = Server::bind(config, source).await?;
    let addresses = server.addresses();
    let port = |a: Option<std::net::SocketAddr>| a.map_or(0, |a| a.port());
    let (tls, ssh, admin) = (
        port(addresses.tls),
        port(addresses.ssh),
        port(addresses.admin),
    );
    let key = lab.issue_user_certificate(
        "user_key",
        "demo-user",
        &["abc1234", "m1x2y3", DEMO_SLEEPER],
        Duration::from_secs(8 * 3600),
    )?;
    let issuer_config = lab.write_issuer_config(&ssh_edge::lab::IssuerLab {
        proxy_address: format!("localhost:{tls}"),
        api_keys: [&random_token(), &random_token()],
        control_plane: Some((&control_plane.edge_token, &control_plane.admin_token)),
        default_jobs: &control_plane.jobs,
        https: false,
    })?;
    let issuer = ssh_edge::issuer::load(&issuer_config)?;
    control_plane.listener.set_nonblocking(true)?;
    let issuer_listener = tokio::net::TcpListener::from_std(control_plane.listener)?;
    tokio::spawn(ssh_edge::issuer::serve(issuer, issuer_listener));
    let exe = std::env::current_exe().context("locating the ssh-edge binary")?;
    let ssh_config = lab.write_ssh_config(&key, &exe, tls, ssh)?;
    // Front B: a token like the signing service issues, for `ssh-edge connect --token-file`.
    let token = lab.mint_token(
        "default",
        "training-job-abc1234-0.ssh.baseten.co",
        DEMO_TOKEN_LIFETIME,
    )?;
    let token_file = lab.path("token");
    std::fs::write(&token_file, &token).context("writing the demo token")?;
    // For scripts (benches/throughput.sh): the ports and paths of this demo, shell syntax.
    let env = format!(
        "TLS_PORT={tls}\nSSH_PORT={ssh}\nADMIN_PORT={admin}\nSSHD_PORT={}\nLOGIN_USER={}\nSSH_CONFIG={}\nUSER_KEY={}\nDEMO_DIR={}\nTOKEN_FILE={}\nCONTROL_PLANE_PORT={}\nSLEEPY_HOST=training-job-{DEMO_SLEEPER}-0.ssh.baseten.co\nSLEEPY_PORT={}\n",
        lab.sshd_port,
        lab.login_user,
        ssh_config.display(),
        key.display(),
        lab.dir.display(),
        token_file.display(),
        control_plane.port,
        control_plane.sleeper_port,
    );
    std::fs::write(lab.path("demo.env"), env).context("writing demo.env")?;
    println!(
        "\nssh-edge demo is running (backend sshd on 127.0.0.1:{sshd}, files in {dir}).\n\
         Config: {config}\n\n\
         Land in a shell through the TLS front (SNI routing, ProxyCommand ssh-edge connect):\n\
         \x20 ssh -F {cfg} training-job-abc1234-0.ssh.baseten.co\n\n\
         The same with openssl as ProxyCommand:\n\
         \x20 ssh -F {cfg} -o ProxyCommand='openssl s_client -quiet -verify_quiet -connect 127.0.0.1:{tls} -servername %h 2>/dev/null' training-job-abc1234-0.ssh.baseten.co\n\n\
         Through the plain-SSH front (target in the user name):\n\
         \x20 ssh -F {cfg} training-job-abc1234-0@127.0.0.1\n\n\
         Through the token front (passthrough: the backend sshd itself checks your certificate):\n\
         \x20 ssh -F {cfg} -o ProxyCommand='{exe} connect --edge localhost:{tls} --ca-file {dir}/tls-ca.pem --token-file {token} %h' -o HostKeyAlias=[127.0.0.1]:{sshd} -o UserKnownHostsFile={dir}/backend_known_hosts -l {user} training-job-abc1234-0.ssh.baseten.co\n\n\
         A workload that sleeps until someone connects (the control plane's hook starts its sshd):\n\
         \x20 ssh -F {cfg} training-job-{DEMO_SLEEPER}-0.ssh.baseten.co\n\n\
         The control plane (ssh-edge issuer, http://127.0.0.1:{cp}): a workload's state, and extending its session expiry:\n\
         \x20 curl -H \"Authorization: Bearer $(cat {dir}/control-plane-admin-token)\" http://127.0.0.1:{cp}/v1/admin/workloads/training-job-abc1234-0.ssh.baseten.co\n\
         \x20 curl -H \"Authorization: Bearer $(cat {dir}/control-plane-admin-token)\" -d '{{\"extend_secs\": 3600}}' http://127.0.0.1:{cp}/v1/admin/workloads/training-job-abc1234-0.ssh.baseten.co/expiry\n\n\
         Metrics: curl http://127.0.0.1:{admin}/metrics\n\n\
         Press Ctrl-C to stop.\n",
        sshd = lab.sshd_port,
        dir = lab.dir.display(),
        config = config_path.display(),
        cfg = ssh_config.display(),
        exe = exe.display(),
        token = token_file.display(),
        user = lab.login_user,
        cp = control_plane.port,
    );
    // SIGTERM too (scripts stop the demo with `kill`); open sessions drain first, then
    // dropping the lab stops its sshd.
    let shutdown = crate::signals::wire(&server)?;
    server
        .run(async move {
            shutdown.await;
            println!("stopping demo");
        })
        .await;
    drop(lab);
    Ok(())
}

/// The demo's sleeping workload (job id): its sshd starts when the control plane activates it.
const DEMO_SLEEPER: &str = "sleepy1";

/// The demo's control plane, before it serves: its listener, tokens and workloads.
struct DemoControlPlane {
    listener: std::net::TcpListener,
    port: u16,
    edge_token: String,
    admin_token: String,
    jobs: String,
    sleeper_port: u16,
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Points the demo's edge at a control plane (an in-process `ssh-edge issuer`) and adds the
/// sleeping workload: a route to a second sshd that its `on_activate` hook starts.
fn demo_control_plane(
    lab: &mut Lab,
    raw: &mut config::RawConfig,
) -> anyhow::Result<DemoControlPlane> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("binding the control plane")?;
    let port = listener.local_addr()?.port();
    let sleeper = lab.sleeping_backend(ssh_edge::lab::free_port(), DEMO_SLEEPER)?;
    let (edge_token, admin_token) = (random_token(), random_token());
    let token_file = lab.path("control-plane-token");
    std::fs::write(&token_file, &edge_token).context("writing the control-plane token")?;
    std::fs::write(lab.path("control-plane-admin-token"), &admin_token)
        .context("writing the control-plane admin token")?;
    raw.control_plane.url = Some(format!("http://127.0.0.1:{port}"));
    raw.control_plane.token_file = Some(token_file);
    raw.routes.insert(
        0,
        config::RawRoute {
            kind: ssh_edge::hostname::TRAINING_JOB_KIND.into(),
            match_fields: [("job_id".to_string(), DEMO_SLEEPER.to_string())].into(),
            backend: format!("127.0.0.1:{}", sleeper.port),
            login_user: lab.login_user.clone(),
            principal: "{job_id}".into(),
            ..config::RawRoute::default()
        },
    );
    let jobs = format!(
        r#"{{ job_id = "abc1234", project_id = "p1" }}, {{ job_id = "{DEMO_SLEEPER}", project_id = "p1", trigger = "on_demand", on_activate = "{}" }}"#,
        sleeper.start_command(3)
    );
    Ok(DemoControlPlane {
        listener,
        port,
        edge_token,
        admin_token,
        jobs,
        sleeper_port: sleeper.port,
    })
}
