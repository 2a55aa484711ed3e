//! `ssh-edge-loadtest`: see the library docs. Prints a summary, or JSON with `--json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use std::io::IsTerminal;

use clap::Parser;
use ssh_edge_loadtest::stall::Stall;
use ssh_edge_loadtest::verify::Verify;
use ssh_edge_loadtest::{Mode, Options, Report, run};

#[derive(Parser)]
#[command(
    version,
    about = "Load generator for ssh-edge (and any sshd, as a baseline)"
)]
struct Cli {
    /// host:port of an edge front C or an sshd.
    #[arg(long)]
    addr: String,
    /// SSH user: the workload target on front C (`training-job-abc1234-0`), the login user on
    /// an sshd. Required except with `--mode stall`.
    #[arg(long)]
    user: Option<String>,
    /// Private key; its certificate must be next to it as `<key>-cert.pub`. Required except
    /// with `--mode stall`.
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "logins")]
    mode: Mode,
    /// Concurrent connections (workers in `logins` mode, held connections in `stall`).
    #[arg(long, default_value_t = 10)]
    connections: usize,
    #[arg(long, default_value_t = 10)]
    duration_secs: u64,
    /// Command each session runs (default per mode: `true`; `exec cat > /dev/null`, which
    /// ends with the session; the `--verify` check).
    #[arg(long)]
    command: Option<String>,
    /// Process whose memory (with its children) the idle mode reports; repeatable.
    #[arg(long = "watch-pid")]
    watch_pids: Vec<u32>,
    /// Process (with its children) to leave out of the watched memory; repeatable.
    #[arg(long = "exclude-pid")]
    exclude_pids: Vec<u32>,
    /// `stall` mode: what each connection sends before stalling (`silent`: nothing; `ident`:
    /// an SSH identification line).
    #[arg(long, value_enum, default_value = "silent")]
    stall: Stall,
    /// `stall` mode: bind the connections to the source addresses 127.0.1.1..=N, round-robin
    /// (0: the system picks).
    #[arg(long, default_value_t = 0)]
    sources: usize,
    /// Start at most R new sessions (logins) per second instead of bursts; idle mode also
    /// keeps at most 16 logins in flight, so a ramp faster than the server slows to its pace.
    #[arg(long)]
    ramp_per_sec: Option<f64>,
    /// The one cipher the client offers, e.g. aes128-gcm@openssh.com or
    /// chacha20-poly1305@openssh.com (default: russh's preference list).
    #[arg(long)]
    cipher: Option<String>,
    /// `bulk` mode: how the far end checks the stream (`cksum`: CRC and length, compared with
    /// what was sent; `count`: `wc -c`; `none`: `cat > /dev/null`). A mismatch is `corrupt`.
    #[arg(long, value_enum, default_value = "cksum")]
    verify: Verify,
    /// No status line on stderr (it is shown only on a terminal anyway).
    #[arg(long, short)]
    quiet: bool,
    /// Allow a target that is not loopback.
    #[arg(long)]
    allow_remote: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn print(r: &Report) {
    println!(
        "{:?} against {}: {} connections, {:.1} s{}{}",
        r.mode,
        r.addr,
        r.connections,
        r.elapsed_secs,
        r.ramp_per_sec
            .map(|v| format!(", ramp {v}/s"))
            .unwrap_or_default(),
        r.cipher
            .as_deref()
            .map(|c| format!(", cipher {c}"))
            .unwrap_or_default(),
    );
    println!(
        "  ok {}   errors {}{}   {:.1}/s",
        r.ok,
        r.errors.total(),
        if r.errors.total() > 0 {
            format!(" ({})", r.errors)
        } else {
            String::new()
        },
        r.per_sec
    );
    for (kind, d) in &r.error_details {
        if !d.example.is_empty() {
            println!("    {kind} {}: e.g. {:?}", d.count, d.example);
        }
    }
    if let Some(l) = r.latency {
        println!(
            "  latency p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
            l.p50_ms, l.p99_ms, l.max_ms
        );
    }
    if r.bytes_sent > 0 {
        println!("  sent {} bytes, {:.1} MiB/s", r.bytes_sent, r.mib_per_sec);
    }
    if let Some(v) = r.verify
        && v != Verify::None
    {
        println!(
            "  verified at the far end ({v:?}): {} bytes, corrupt {}",
            r.bytes_verified,
            r.errors.get("corrupt")
        );
    }
    if let Some(s) = &r.stall {
        println!(
            "  attempts {}   established {}   closed by server {} ({} refused with a notice)   still open at end {}   peak open {}",
            s.attempts,
            s.established,
            s.closed_by_edge,
            s.refused_with_notice,
            s.still_open_at_end,
            s.peak_open
        );
    }
    if let Some(m) = &r.memory {
        println!(
            "  memory {} -> {} bytes with {} sessions held, {} bytes per held session",
            m.before_bytes, m.held_bytes, m.held_sessions, m.per_session_bytes
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let (user, key) = match (cli.user, cli.key) {
        (Some(user), Some(key)) => (user, key),
        (user, key) if cli.mode == Mode::Stall => {
            (user.unwrap_or_default(), key.unwrap_or_default())
        }
        _ => {
            eprintln!("ssh-edge-loadtest: --user and --key are required except with --mode stall");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        addr: cli.addr,
        user,
        key,
        mode: cli.mode,
        connections: cli.connections,
        duration: Duration::from_secs(cli.duration_secs),
        command: cli.command,
        watch_pids: cli.watch_pids,
        exclude_pids: cli.exclude_pids,
        allow_remote: cli.allow_remote,
        stall: cli.stall,
        sources: cli.sources,
        ramp_per_sec: cli.ramp_per_sec,
        cipher: cli.cipher,
        verify: cli.verify,
        progress: !cli.quiet && std::io::stderr().is_terminal(),
    };
    match run(opts).await {
        Ok(report) => {
            if cli.json {
                match serde_json::to_string(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("ssh-edge-loadtest: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print(&report);
            }
            // Nothing got through, or what got through arrived changed: either fails the run.
            if report.ok == 0 || report.errors.get("corrupt") > 0 {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ssh-edge-loadtest: {e}");
            ExitCode::from(2)
        }
    }
}
