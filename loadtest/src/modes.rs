//! What one worker does in each of the login modes, reporting into its own [`Tally`] (merged at
//! the end) and the shared [`Live`] counters (read while the run goes on).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use crate::client::{self, LoadError, Target};
use crate::live::Live;
use crate::ramp::Ramp;
use crate::stats::{Errors, Latencies};
use crate::verify::{Stream, Verify};

/// At most this many idle-mode logins in flight at once, ramp or not: a ramp faster than the
/// server logs in then slows to the server's pace instead of queuing logins until they time
/// out.
pub const IDLE_HANDSHAKES: usize = 16;

/// How long one chunk may wait for the channel's window before the transfer counts as stuck.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What one worker saw.
#[derive(Default)]
pub struct Tally {
    pub ok: u64,
    pub errors: Errors,
    pub latency: Latencies,
    pub bytes: u64,
    /// Bytes the far end confirmed (bulk with a check).
    pub verified: u64,
}

impl Tally {
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.errors.merge(other.errors);
        self.latency.extend(other.latency);
        self.bytes += other.bytes;
        self.verified += other.verified;
    }

    fn fail(&mut self, live: &Live, e: LoadError) {
        Live::bump(&live.errors);
        self.errors.count(e.kind(), &e.reason(), &e.to_string());
    }
}

/// What every worker shares.
pub struct Shared {
    pub target: Target,
    pub command: Option<String>,
    pub ramp: Ramp,
    pub live: Arc<Live>,
    pub deadline: TokioInstant,
}

impl Shared {
    /// Waits for a ramp slot; false once the deadline passed first.
    async fn begin(&self) -> bool {
        if tokio::time::timeout_at(self.deadline, self.ramp.start())
            .await
            .is_err()
        {
            return false;
        }
        Live::bump(&self.live.started);
        true
    }
}

/// Log in, run the command (default `true`), log out; again until the deadline.
pub async fn logins(s: &Shared) -> Tally {
    let mut tally = Tally::default();
    while TokioInstant::now() < s.deadline && s.begin().await {
        let t0 = Instant::now();
        let result = async {
            let handle = client::login(&s.target).await?;
            let channel = client::start(&handle, s.command.as_deref().unwrap_or("true")).await?;
            let done = client::finish(channel).await;
            client::disconnect(handle).await;
            done
        }
        .await;
        match result {
            Ok(_) => {
                tally.ok += 1;
                Live::bump(&s.live.ok);
                tally.latency.record(t0.elapsed());
            }
            Err(e) => {
                tally.fail(&s.live, e);
                // A refusing server answers in microseconds: don't spin on it.
                tokio::time::sleep(FAILED_LOGIN_PAUSE).await;
            }
        }
    }
    tally
}

/// How long a `logins` worker pauses after a failed login before the next.
pub const FAILED_LOGIN_PAUSE: Duration = Duration::from_millis(50);

/// An idle session's links to the orchestrator.
pub struct IdleHold {
    pub release: tokio::sync::watch::Receiver<bool>,
    /// Bounds the logins in flight.
    pub handshakes: Arc<tokio::sync::Semaphore>,
}

/// What an idle session runs by default: it waits on stdin and so ends when the session does
/// (sshd closes its stdin); `exec` leaves one process, not a shell and a `cat`. A `sleep`
/// outlives the session as an orphan, thousands per run.
pub const IDLE_COMMAND: &str = "exec cat > /dev/null";

/// Log in, start the command ([`IDLE_COMMAND`]), and hold the session until released.
/// A session the server ends while held is a `closed` error and leaves the `up` count.
pub async fn idle(s: &Shared, mut hold: IdleHold) -> Tally {
    let mut tally = Tally::default();
    let session = async {
        let _permit = hold.handshakes.acquire().await.ok();
        // Idle sessions all start, whatever the deadline (the hold comes after).
        s.ramp.start().await;
        Live::bump(&s.live.started);
        let t0 = Instant::now();
        let attempt = async {
            let handle = client::login(&s.target).await?;
            let command = s.command.as_deref().unwrap_or(IDLE_COMMAND);
            let channel = client::start(&handle, command).await?;
            Ok::<_, LoadError>((handle, channel))
        };
        let result = tokio::time::timeout(client::LOGIN_TIMEOUT, attempt)
            .await
            .unwrap_or(Err(LoadError::Timeout));
        result.map(|s| (s, t0.elapsed()))
    }
    .await;
    match session {
        Ok(((handle, mut channel), took)) => {
            tally.ok += 1;
            tally.latency.record(took);
            Live::bump(&s.live.up);
            Live::bump(&s.live.ok);
            let ended = tokio::select! {
                _ = hold.release.wait_for(|r| *r) => false,
                _ = async { while channel.wait().await.is_some() {} } => true,
            };
            Live::drop_one(&s.live.up);
            if ended {
                tally.fail(&s.live, LoadError::Closed);
            }
            drop(channel);
            client::disconnect(handle).await;
        }
        Err(e) => tally.fail(&s.live, e),
    }
    tally
}

/// Log in and push a pseudo-random stream into the far end's check (`verify`'s command, or
/// `--command`) until the deadline; then compare what it printed with what was sent.
pub async fn bulk(s: &Shared, verify: Verify, seed: u64) -> Tally {
    let mut tally = Tally::default();
    if !s.begin().await {
        return tally;
    }
    let t0 = Instant::now();
    let session = async {
        let handle = client::login(&s.target).await?;
        let command = s.command.as_deref().unwrap_or(verify.command());
        let channel = client::start(&handle, command).await?;
        Ok::<_, LoadError>((handle, channel))
    }
    .await;
    let (handle, channel) = match session {
        Ok(s) => s,
        Err(e) => {
            tally.fail(&s.live, e);
            return tally;
        }
    };
    tally.ok += 1;
    tally.latency.record(t0.elapsed());
    Live::bump(&s.live.ok);
    Live::bump(&s.live.up);
    let mut stream = Stream::new(seed);
    let mut failed = false;
    // A chunk is never cut by the deadline: the far end must see whole chunks to agree.
    while TokioInstant::now() < s.deadline {
        let chunk = stream.next_chunk();
        let len = chunk.len() as u64;
        match tokio::time::timeout(SEND_TIMEOUT, channel.data_bytes(chunk)).await {
            Ok(Ok(())) => tally.bytes += len,
            Ok(Err(e)) => {
                tally.fail(&s.live, LoadError::Channel(e.to_string()));
                failed = true;
                break;
            }
            Err(_) => {
                tally.fail(&s.live, LoadError::Timeout);
                failed = true;
                break;
            }
        }
    }
    let _ = channel.eof().await;
    let finished = tokio::time::timeout(SEND_TIMEOUT, client::finish(channel))
        .await
        .unwrap_or(Err(LoadError::Timeout));
    Live::drop_one(&s.live.up);
    match finished {
        Ok(output) if !failed => match stream.check(verify, &output) {
            Ok(()) if verify != Verify::None => tally.verified += stream.len(),
            Ok(()) => {}
            Err(why) => tally.fail(&s.live, LoadError::Corrupt(why)),
        },
        Ok(_) => {}
        Err(e) => tally.fail(&s.live, e),
    }
    client::disconnect(handle).await;
    tally
}
