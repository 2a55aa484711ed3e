//! Pacing of new sessions (`--ramp-per-sec`) and the count of starts per second.
//!
//! A burst of handshakes trips a server's pre-authentication limits (sshd's `MaxStartups`
//! drops them) long before its session capacity is reached; a ramp measures the capacity.
//! Starts are spaced by at least 1/R on the clock they are recorded with, so any one-second
//! bucket of the report holds at most R+1 of them, whatever the scheduler does.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The highest rate a ramp may ask for (a start every 100 µs).
pub const MAX_RAMP_PER_SEC: f64 = 10_000.0;

/// Hands out session starts: at most R a second with a ramp, at once without.
pub struct Ramp {
    interval: Option<Duration>,
    /// The last start; held across the wait so starts are serialized.
    last: tokio::sync::Mutex<Option<Instant>>,
    origin: Instant,
    /// Starts in each second since `origin`.
    buckets: Mutex<Vec<u64>>,
}

impl Ramp {
    /// `per_sec`: None or a rate in (0, [`MAX_RAMP_PER_SEC`]] (checked by the caller).
    pub fn new(per_sec: Option<f64>) -> Ramp {
        Ramp {
            interval: per_sec.map(|r| Duration::from_secs_f64(1.0 / r)),
            last: tokio::sync::Mutex::new(None),
            origin: Instant::now(),
            buckets: Mutex::new(Vec::new()),
        }
    }

    /// Waits for this session's turn and records its start.
    pub async fn start(&self) {
        let now = match self.interval {
            None => Instant::now(),
            Some(interval) => {
                let mut last = self.last.lock().await;
                if let Some(prev) = *last {
                    tokio::time::sleep_until(prev + interval).await;
                }
                let now = Instant::now();
                *last = Some(now);
                now
            }
        };
        let second = now.duration_since(self.origin).as_secs() as usize;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() <= second {
            buckets.resize(second + 1, 0);
        }
        buckets[second] += 1;
    }

    /// Starts in each second of the run so far.
    pub fn per_second(&self) -> Vec<u64> {
        self.buckets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_ramp_spaces_starts_and_counts_them_per_second() {
        let ramp = std::sync::Arc::new(Ramp::new(Some(4.0)));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let ramp = ramp.clone();
            tasks.push(tokio::spawn(async move { ramp.start().await }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // 10 starts 250 ms apart from t=0: 4, 4, 2.
        assert_eq!(ramp.per_second(), vec![4, 4, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_ramp_everything_starts_at_once() {
        let ramp = Ramp::new(None);
        for _ in 0..10 {
            ramp.start().await;
        }
        assert_eq!(ramp.per_second(), vec![10]);
    }
}
