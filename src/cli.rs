//! Command-line interface. Thin: every subcommand calls into the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use ssh_edge::config;
use ssh_edge::connect::{self, ConnectOptions};
use ssh_edge::helper;
use ssh_edge::server;

#[derive(Parser)]
#[command(name = "ssh-edge", version, about = "Multi-tenant SSH edge proxy")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge.
    Run {
        /// TOML config file (SSH_EDGE_* variables override it).
        #[arg(long, short, env = "SSH_EDGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a config and print every problem found.
    CheckConfig {
        #[arg(long, short, env = "SSH_EDGE_CONFIG")]
        config: Option<PathBuf>,
        /// Do not read the files the config names (keys, certificates, token files,
        /// known_hosts): check a config for another machine. Everything else is checked.
        #[arg(long)]
        no_files: bool,
    },
    /// Start a throwaway loopback world (CAs, keys, a real sshd) and the edge in front of it,
    /// then print ssh commands that land in a shell through it.
    Demo {
        /// Directory for the demo's keys and configs (default: a new temp dir, removed on exit).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Port for the TLS front (0 = any free port).
        #[arg(long, default_value_t = 8443)]
        tls_port: u16,
        /// Port for the plain-SSH front (0 = any free port).
        #[arg(long, default_value_t = 2222)]
        ssh_port: u16,
    },
    /// ProxyCommand for the TLS front: `ProxyCommand ssh-edge connect --edge EDGE:443 %h`.
    Connect {
        /// The workload host (sent as TLS SNI; with --sign, the host to fetch a token for).
        host: String,
        /// Edge address [default: 127.0.0.1:443, or with --sign the one `setup` saved].
        #[arg(long, env = "SSH_EDGE_ADDR")]
        edge: Option<String>,
        /// PEM CA certificates to trust instead of the system store (with --sign, default: the
        /// one `setup` saved).
        #[arg(long, env = "SSH_EDGE_CA_FILE")]
        ca_file: Option<PathBuf>,
        /// Front B: send the token in this file as the preamble (passthrough to the backend sshd).
        /// Each token opens one connection (`token.single_use`).
        #[arg(long, conflicts_with = "sign")]
        token_file: Option<PathBuf>,
        /// Front B with a token of this connection's own: ask the signing API `setup` saved for
        /// a fresh one for HOST (what the managed ~/.ssh/config block runs), so concurrent `ssh`
        /// runs to one host never share a token.
        #[arg(long)]
        sign: bool,
        /// The ~/.ssh directory `setup` wrote (with --sign).
        #[arg(long, requires = "sign")]
        ssh_dir: Option<PathBuf>,
    },
    /// Set up this machine for `ssh <workload host>`: a key pair under ~/.ssh/ssh-edge/ and one
    /// managed, idempotent block in ~/.ssh/config (sign before connecting, then front B).
    Setup {
        /// Signing API base URL, e.g. https://api.example.
        #[arg(long)]
        api: String,
        /// API key for the signing API (stored in ~/.ssh/ssh-edge/settings.toml, mode 0600).
        #[arg(long, env = "SSH_EDGE_API_KEY", hide_env_values = true)]
        api_key: String,
        /// Edge address for front B, host:port.
        #[arg(long)]
        edge: String,
        /// PEM CA certificates to trust (API and edge) instead of the system store.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        #[arg(long, default_value = "ssh.baseten.co")]
        suffix: String,
        /// The ~/.ssh directory to write to.
        #[arg(long)]
        ssh_dir: Option<PathBuf>,
        /// Login user on training-job hosts.
        #[arg(long, default_value = "baseten")]
        training_user: String,
        /// Login user on model hosts.
        #[arg(long, default_value = "app")]
        model_user: String,
    },
    /// Fetch a fresh certificate for HOST from the signing API (the ~/.ssh/config block runs
    /// this; one valid for 5 more minutes is kept). Tokens are `connect --sign`'s, per connection.
    Sign {
        host: String,
        #[arg(long)]
        ssh_dir: Option<PathBuf>,
        /// Ask the API even if the cached certificate is fresh.
        #[arg(long)]
        force: bool,
    },
    /// See and end live sessions on every replica at once, through their admin endpoints
    /// (`--admin URL`, or `--replicas NAME[:PORT]` / `srv:NAME` through DNS).
    Sessions(ssh_edge::sessions_cli::SessionsArgs),
    /// Run the signing API the installed helpers call (certificates and front B tokens).
    Issuer {
        /// Issuer TOML config file (see config/issuer.example.toml).
        #[arg(long, short)]
        config: PathBuf,
        /// Only validate the config (keys and files included), print every problem, and exit.
        #[arg(long)]
        check: bool,
    },
}

fn init_tracing(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // The relay runs on one thread: its reads and writes wake nothing elsewhere.
    let runtime = if matches!(cli.command, Command::Connect { .. }) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Runtime::new()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ssh-edge: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Connect {
            host,
            edge,
            ca_file,
            token_file,
            sign,
            ssh_dir,
        } => {
            // No tracing here: stdout is the SSH stream, stderr the ssh client's terminal.
            let fail = |message: String| -> ! {
                eprintln!("ssh-edge connect: {message}");
                std::process::exit(255);
            };
            let opts = if sign {
                let signed = runtime.block_on(async {
                    let ssh_dir = helper::ssh_dir(ssh_dir)?;
                    let settings = helper::load_settings(&ssh_dir)?;
                    let token = helper::fresh_token(&settings, &ssh_dir, &host).await?;
                    Ok::<_, helper::HelperError>((settings, token))
                });
                let (settings, token) = signed.unwrap_or_else(|e| fail(e.to_string()));
                ConnectOptions {
                    host,
                    edge: edge.unwrap_or(settings.edge),
                    ca_file: ca_file.or(settings.ca_file),
                    token: Some(token),
                }
            } else {
                let token = token_file.map(|p| match std::fs::read(&p) {
                    Ok(t) => t.trim_ascii().to_vec(),
                    Err(e) => fail(format!("cannot read token file {}: {e}", p.display())),
                });
                ConnectOptions {
                    host,
                    edge: edge.unwrap_or_else(|| "127.0.0.1:443".to_string()),
                    ca_file,
                    token,
                }
            };
            if let Err(e) = runtime.block_on(connect::run(&opts)) {
                fail(e.to_string());
            }
            // Exit now: the blocking stdin reader would otherwise hold the runtime open.
            std::process::exit(0);
        }
        Command::CheckConfig { config, no_files } => check_config(config, !no_files),
        Command::Setup {
            api,
            api_key,
            edge,
            ca_file,
            suffix,
            ssh_dir,
            training_user,
            model_user,
        } => (|| -> anyhow::Result<()> {
            let ssh_dir = helper::ssh_dir(ssh_dir)?;
            let ca_file = ca_file
                .map(|c| {
                    std::fs::canonicalize(&c).with_context(|| format!("CA file {}", c.display()))
                })
                .transpose()?;
            let settings = helper::Settings {
                api,
                api_key,
                edge,
                ca_file,
                suffix,
            };
            let exe = std::env::current_exe().context("locating the ssh-edge binary")?;
            let opts = helper::SetupOptions {
                ssh_dir,
                settings,
                exe,
                training_user,
                model_user,
            };
            let config = helper::setup(&opts)?;
            println!(
                "ssh-edge: set up; {} now sends *.{} hosts through the edge",
                config.display(),
                opts.settings.suffix
            );
            Ok(())
        })(),
        Command::Sign {
            host,
            ssh_dir,
            force,
        } => (|| -> anyhow::Result<()> {
            let ssh_dir = helper::ssh_dir(ssh_dir)?;
            let result = runtime.block_on(helper::sign(&helper::SignOptions {
                ssh_dir,
                host,
                force,
            }));
            match result {
                Ok(_) => Ok(()),
                Err(e) => Err(anyhow::anyhow!("sign: {e}")),
            }
        })(),
        Command::Run { config } => {
            init_tracing(&cli.log_format);
            runtime.block_on(run(config))
        }
        // Exits 0, 1, or sessions_cli::EXIT_INCOMPLETE when some replica did not answer.
        Command::Sessions(args) => return runtime.block_on(ssh_edge::sessions_cli::run(args)),
        Command::Issuer {
            config,
            check: true,
        } => ssh_edge::issuer::load(&config)
            .map(|_| println!("issuer configuration OK"))
            .map_err(anyhow::Error::from),
        Command::Issuer { config, .. } => {
            init_tracing(&cli.log_format);
            runtime
                .block_on(ssh_edge::issuer::run(config))
                .map_err(anyhow::Error::from)
        }
        Command::Demo {
            dir,
            tls_port,
            ssh_port,
        } => {
            init_tracing(&cli.log_format);
            runtime.block_on(crate::demo::demo(dir, tls_port, ssh_port))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ssh-edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(path: Option<PathBuf>, files: bool) -> anyhow::Result<()> {
    let raw = config::check(path.as_deref(), files)?;
    for warning in config::warnings(&raw) {
        println!("warning: {warning}");
    }
    if files {
        println!("configuration OK");
    } else {
        println!("configuration OK (the files it names were not read)");
    }
    Ok(())
}

async fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    let raw = config::load_raw(path.as_deref())?;
    let config = config::validate(&raw)?;
    for warning in config::warnings(&raw) {
        tracing::warn!("{warning}");
    }
    server::raise_open_files_limit();
    let source = server::ConfigSource {
        path,
        watch: raw.reload,
    };
    let server = server::Server::bind(config, source).await?;
    let shutdown = crate::signals::wire(&server)?;
    server.run(shutdown).await;
    Ok(())
}
