//! Counters the workers update as they go: the idle mode decides from them when every session
//! is in (to sample memory while they are held), and the terminal progress line shows them.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Default)]
pub struct Live {
    /// Sessions (or logins) begun.
    pub started: AtomicU64,
    /// Sessions established and not yet ended.
    pub up: AtomicU64,
    /// Logins completed (`logins`) or sessions established (`idle`, `bulk`).
    pub ok: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn drop_one(counter: &AtomicU64) {
        counter.fetch_sub(1, Ordering::Relaxed);
    }

    /// "12.0 s  started 120  up 118  ok 118  errors 2"
    pub fn line(&self, since: Instant) -> String {
        format!(
            "{:.0} s  started {}  up {}  ok {}  errors {}",
            since.elapsed().as_secs_f64(),
            Live::get(&self.started),
            Live::get(&self.up),
            Live::get(&self.ok),
            Live::get(&self.errors),
        )
    }
}

/// Rewrites one status line on stderr every second until [`Progress::finish`], which clears
/// it so the summary starts on a clean line. Only started for a terminal.
pub fn progress(live: Arc<Live>, label: String) -> Progress {
    let since = Instant::now();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{label}  {}", live.line(since));
            let _ = err.flush();
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    });
    Progress { stop, task }
}

pub struct Progress {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    /// Stops the line and clears it.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_the_counters() {
        let live = Live::default();
        Live::bump(&live.started);
        Live::bump(&live.started);
        Live::bump(&live.up);
        Live::bump(&live.errors);
        let line = live.line(Instant::now());
        assert!(line.ends_with("started 2  up 1  ok 0  errors 1"), "{line}");
    }
}
