//! Live sessions: how many are open, and a way to wait until none are (graceful drain) without
//! polling. Shared by every configuration generation, since sessions outlive reloads.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntGauge;
use tokio::sync::watch;

/// The count of open sessions, mirrored into `ssh_edge_sessions_active`.
pub struct Sessions {
    gauge: IntGauge,
    open: watch::Sender<usize>,
}

/// One open session; dropping it closes it.
pub struct SessionGuard(Arc<Sessions>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.gauge.dec();
        self.0.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Sessions {
    pub fn new(gauge: IntGauge) -> Arc<Self> {
        Arc::new(Self {
            gauge,
            open: watch::Sender::new(0),
        })
    }

    /// Counts a session as open until the guard drops.
    pub fn open(self: &Arc<Self>) -> SessionGuard {
        self.gauge.inc();
        self.open.send_modify(|n| *n += 1);
        SessionGuard(self.clone())
    }

    pub fn count(&self) -> usize {
        *self.open.borrow()
    }

    /// Waits until no session is open, at most `timeout`; true when they all ended.
    pub async fn wait_empty(&self, timeout: Duration) -> bool {
        let mut open = self.open.subscribe();
        tokio::time::timeout(timeout, open.wait_for(|n| *n == 0))
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_waits_for_the_last_session() {
        let sessions = Sessions::new(IntGauge::new("s", "sessions").unwrap());
        assert!(sessions.wait_empty(Duration::from_secs(1)).await);
        let a = sessions.open();
        let b = sessions.open();
        assert_eq!(sessions.count(), 2);
        assert!(!sessions.wait_empty(Duration::from_secs(1)).await);
        drop(a);
        let waiter = {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.wait_empty(Duration::from_secs(60)).await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(b);
        assert!(waiter.await.unwrap());
        assert_eq!(sessions.gauge.get(), 0);
    }
}
