//! `ssh-edge sessions list|kill`: the admin sessions API of every replica at once.
//!
//! The replicas are `--admin` URLs, or every replica of a deployment through DNS
//! (`--replicas NAME[:PORT]`: all A/AAAA records of a headless Service; `srv:NAME`: SRV).
//! Each is asked concurrently, each request under `--timeout-secs`; the answers are merged
//! with the replica that holds each session. A replica that does not answer is named, and
//! the command then exits with [`EXIT_INCOMPLETE`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

mod http;
mod output;
mod targets;

pub(crate) use http::ReplicaError;
pub(crate) use output::{Merged, Session};
pub(crate) use targets::{Failure, Target, TargetError};

/// Exit status when some replica did not answer: the list is incomplete, or some sessions
/// may still be open. (1 is a plain error; clap uses 2 for bad usage.)
pub const EXIT_INCOMPLETE: u8 = 3;

/// `ssh-edge sessions …`.
#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// List the live sessions of every replica (every filter given must match).
    List {
        #[command(flatten)]
        targets: TargetArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON: {"sessions": [{..., "replica": R}], "unreachable": [{"replica", "error"}]}.
        #[arg(long)]
        json: bool,
    },
    /// End the sessions matching every field given, on every replica; or one session by id on
    /// the one replica that holds it.
    Kill {
        #[command(flatten)]
        targets: TargetArgs,
        /// The session id (as `list` shows it) on the replica named by --replica.
        #[arg(long, requires = "replica", conflicts_with_all = ["workload", "key_id", "serial", "remote", "sub"])]
        id: Option<u64>,
        /// The replica holding --id, as `list` names it: HOST:PORT or http://HOST:PORT.
        #[arg(long, requires = "id", value_name = "HOST:PORT")]
        replica: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Why: shown to the user (`session ended by an administrator: <reason>`).
        #[arg(long)]
        reason: Option<String>,
        /// Print JSON: {"killed": [...], "replicas": [{"replica", "killed"}], "unreachable": [...]}.
        #[arg(long)]
        json: bool,
    },
}

/// Which replicas to ask, and how.
#[derive(Debug, Clone, Args)]
pub struct TargetArgs {
    /// One replica's admin endpoint, http://HOST[:PORT] (port 9100 when left out); repeatable.
    #[arg(long = "admin", value_name = "URL", conflicts_with = "replicas")]
    pub admin: Vec<String>,
    /// Every replica through DNS: NAME[:PORT] asks for all A/AAAA records of NAME (a headless
    /// Service; port 9100 when left out), srv:NAME for SRV records (host and port from each).
    #[arg(long, value_name = "NAME[:PORT]|srv:NAME")]
    pub replicas: Option<String>,
    /// A DNS server to ask instead of those in /etc/resolv.conf; repeatable.
    #[arg(long = "dns-server", value_name = "IP[:PORT]", value_parser = dns_server)]
    pub dns_server: Vec<SocketAddr>,
    /// File whose first line is the admin bearer token (the edges' admin.bearer_token_file).
    #[arg(long, value_name = "PATH", env = "SSH_EDGE_ADMIN_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Seconds each replica has to answer (DNS too).
    #[arg(long, default_value_t = 5, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_secs: u64,
}

fn dns_server(s: &str) -> Result<SocketAddr, TargetError> {
    targets::parse_dns_server(s)
}

/// The admin API's session filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct FilterArgs {
    /// Workload host: the full name or its first label.
    #[arg(long)]
    pub workload: Option<String>,
    /// Certificate key id (fronts A and C).
    #[arg(long)]
    pub key_id: Option<String>,
    /// Certificate serial.
    #[arg(long)]
    pub serial: Option<u64>,
    /// Remote (tenant) name.
    #[arg(long)]
    pub remote: Option<String>,
    /// Token subject (front B, where the edge sees no certificate).
    #[arg(long)]
    pub sub: Option<String>,
}

impl FilterArgs {
    pub(crate) fn is_empty(&self) -> bool {
        *self == FilterArgs::default()
    }

    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        if let Some(w) = &self.workload {
            pairs.push(("workload", w.clone()));
        }
        if let Some(k) = &self.key_id {
            pairs.push(("key_id", k.clone()));
        }
        if let Some(n) = self.serial {
            pairs.push(("serial", n.to_string()));
        }
        if let Some(r) = &self.remote {
            pairs.push(("remote", r.clone()));
        }
        if let Some(u) = &self.sub {
            pairs.push(("sub", u.clone()));
        }
        pairs
    }
}

/// What went wrong before any replica could answer (or with the one replica of `--id`).
/// Messages name the argument or replica and what was expected.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionsError {
    #[error(
        "say which replicas to ask: --admin URL (repeatable) or --replicas NAME[:PORT] / srv:NAME"
    )]
    NoTargets,
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    #[error(
        "say which sessions to end: --id N --replica HOST:PORT, or --key-id, --serial, --workload, --remote and/or --sub"
    )]
    NoSelector,
    #[error(
        "replica {replica} is not one of the replicas asked for ({found}); expected one of them, as `sessions list` names it"
    )]
    NotATarget { replica: String, found: String },
    #[error("replica {replica}: no session {id} (it may have ended already)")]
    NoSuchSession { replica: String, id: u64 },
}

/// `/sessions?…` for `list` (pure).
pub(crate) fn list_path(filter: &FilterArgs) -> String {
    with_query("/sessions", &filter.pairs())
}

/// `/sessions/kill?…` for `kill` by fields; refuses an empty selector (pure).
pub(crate) fn kill_path(
    filter: &FilterArgs,
    reason: Option<&str>,
) -> Result<String, SessionsError> {
    if filter.is_empty() {
        return Err(SessionsError::NoSelector);
    }
    let mut pairs = filter.pairs();
    if let Some(r) = reason {
        pairs.push(("reason", r.to_string()));
    }
    Ok(with_query("/sessions/kill", &pairs))
}

/// `/sessions/{id}?reason=…` for `kill --id` (pure).
pub(crate) fn delete_path(id: u64, reason: Option<&str>) -> String {
    let pairs: Vec<_> = reason
        .map(|r| ("reason", r.to_string()))
        .into_iter()
        .collect();
    with_query(&format!("/sessions/{id}"), &pairs)
}

fn with_query(path: &str, pairs: &[(&str, String)]) -> String {
    if pairs.is_empty() {
        return path.to_string();
    }
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{query}")
}

/// The first line of the token file: a bearer token is printable ASCII without spaces.
pub(crate) fn read_token(path: &std::path::Path) -> Result<String, SessionsError> {
    let err = |reason: String| SessionsError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(err("empty: expected the token on its first line".into()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err(
            "expected the token on the first line as printable ASCII without spaces".into(),
        ));
    }
    Ok(token.to_string())
}

/// Everything one run needs to reach the replicas.
struct Reach {
    targets: Vec<Target>,
    failures: Vec<Failure>,
    token: Option<String>,
    timeout: Duration,
}

/// The replicas `args` name (`None`: none named), resolved.
async fn resolve_targets(
    args: &TargetArgs,
) -> Result<Option<(Vec<Target>, Vec<Failure>)>, SessionsError> {
    let timeout = Duration::from_secs(args.timeout_secs);
    match (&args.replicas, args.admin.is_empty()) {
        (Some(spec), _) => {
            let spec = targets::parse_replicas(spec)?;
            Ok(Some(
                targets::resolve(&spec, &args.dns_server, timeout).await?,
            ))
        }
        (None, false) => {
            let parsed = args
                .admin
                .iter()
                .map(|u| targets::parse_admin_url(u))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some((targets::dedup(parsed), Vec::new())))
        }
        (None, true) => Ok(None),
    }
}

fn token(args: &TargetArgs) -> Result<Option<String>, SessionsError> {
    args.token_file.as_deref().map(read_token).transpose()
}

async fn reach(args: &TargetArgs) -> Result<Reach, SessionsError> {
    let token = token(args)?;
    let (targets, failures) = resolve_targets(args)
        .await?
        .ok_or(SessionsError::NoTargets)?;
    Ok(Reach {
        targets,
        failures,
        token,
        timeout: Duration::from_secs(args.timeout_secs),
    })
}

/// `method path` on every replica at once; each answer parsed by `parse`, then merged.
async fn ask_all(
    reach: Reach,
    method: &str,
    path: &str,
    parse: fn(&[u8]) -> Result<Vec<Session>, ReplicaError>,
) -> Merged {
    let token = reach.token.as_deref();
    let answers = futures::future::join_all(reach.targets.iter().map(|t| async move {
        let answer = http::call(t, method, path, token, reach.timeout)
            .await
            .and_then(|body| parse(&body));
        (t.clone(), answer)
    }))
    .await;
    output::merge(answers, reach.failures)
}

/// What a run printed, and whether every replica answered.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Printed {
    pub stdout: String,
    pub stderr: String,
    pub complete: bool,
}

fn print_json(value: &serde_json::Value) -> String {
    // A `Value` always serialises.
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

async fn list(
    targets: &TargetArgs,
    filter: &FilterArgs,
    json: bool,
) -> Result<Printed, SessionsError> {
    let reach = reach(targets).await?;
    let merged = ask_all(reach, "GET", &list_path(filter), output::parse_list).await;
    let complete = merged.unreachable.is_empty();
    Ok(if json {
        Printed {
            stdout: print_json(&output::list_json(&merged)),
            stderr: String::new(),
            complete,
        }
    } else {
        let mut stderr = output::unreachable_report(&merged.unreachable, "the list is incomplete");
        if !complete {
            stderr.push_str(&format!(
                "ssh-edge sessions: {} of {} replicas unreachable\n",
                merged.unreachable.len(),
                merged.unreachable.len() + merged.answered.len()
            ));
        }
        Printed {
            stdout: output::table(&merged.sessions, crate::time::unix_now()),
            stderr,
            complete,
        }
    })
}

/// `kill --id N --replica R`: R must be among the replicas asked for, when any are.
async fn kill_one(
    targets: &TargetArgs,
    id: u64,
    replica: &str,
    reason: Option<&str>,
) -> Result<Merged, SessionsError> {
    let mut target = targets::parse_admin_url(replica)?;
    if let Some((found, mut failures)) = resolve_targets(targets).await? {
        if let Some(i) = failures.iter().position(|f| f.replica == target.replica) {
            // Named in DNS, but its address could not be found.
            return Ok(output::merge(Vec::new(), vec![failures.swap_remove(i)]));
        }
        let names: Vec<&str> = found
            .iter()
            .map(|t| t.replica.as_str())
            .chain(failures.iter().map(|f| f.replica.as_str()))
            .collect();
        match found.iter().find(|t| t.replica == target.replica) {
            Some(t) => target = t.clone(),
            None => {
                return Err(SessionsError::NotATarget {
                    replica: target.replica,
                    found: names.join(", "),
                });
            }
        }
    }
    let token = token(targets)?;
    let timeout = Duration::from_secs(targets.timeout_secs);
    let answer = http::call(
        &target,
        "DELETE",
        &delete_path(id, reason),
        token.as_deref(),
        timeout,
    )
    .await
    .and_then(|body| output::parse_killed(&body));
    match answer {
        Err(ReplicaError::NotFound { .. }) => Err(SessionsError::NoSuchSession {
            replica: target.replica,
            id,
        }),
        // Unreachable: named like any other replica that did not answer.
        answer => Ok(output::merge(vec![(target, answer)], Vec::new())),
    }
}

async fn kill(
    targets: &TargetArgs,
    id: Option<(u64, &str)>,
    filter: &FilterArgs,
    reason: Option<&str>,
    json: bool,
) -> Result<Printed, SessionsError> {
    let merged = match id {
        Some((id, replica)) => kill_one(targets, id, replica, reason).await?,
        None => {
            let path = kill_path(filter, reason)?;
            let reach = reach(targets).await?;
            ask_all(reach, "POST", &path, output::parse_killed).await
        }
    };
    let complete = merged.unreachable.is_empty();
    Ok(Printed {
        stdout: if json {
            print_json(&output::kill_json(&merged))
        } else {
            output::kill_report(&merged)
        },
        stderr: if json {
            String::new()
        } else {
            output::unreachable_report(&merged.unreachable, "its sessions were not ended")
        },
        complete,
    })
}

/// Runs one `sessions` command; what to print.
pub(crate) async fn execute(args: &SessionsArgs) -> Result<Printed, SessionsError> {
    match &args.action {
        Action::List {
            targets,
            filter,
            json,
        } => list(targets, filter, *json).await,
        Action::Kill {
            targets,
            id,
            replica,
            filter,
            reason,
            json,
        } => {
            let id = match (id, replica) {
                (Some(id), Some(replica)) => Some((*id, replica.as_str())),
                _ => None,
            };
            kill(targets, id, filter, reason.as_deref(), *json).await
        }
    }
}

/// `ssh-edge sessions …`: prints, and says how it went: 0 when every replica answered,
/// [`EXIT_INCOMPLETE`] when some did not, 1 on any other error.
pub async fn run(args: SessionsArgs) -> ExitCode {
    use std::io::Write as _;
    match execute(&args).await {
        Ok(printed) => {
            // A closed pipe (`| head`) is no reason to fail.
            let _ = std::io::stdout().write_all(printed.stdout.as_bytes());
            let _ = std::io::stderr().write_all(printed.stderr.as_bytes());
            if printed.complete {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_INCOMPLETE)
            }
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ssh-edge sessions: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests;
