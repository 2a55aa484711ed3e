//! Byte counting on the forwarding hot path: the edge-wide Prometheus counter and, when the
//! bytes belong to a session, that session's own count (for the sessions API and idle
//! detection). One or two relaxed atomic adds per packet; no lock, no clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::IntCounter;

#[derive(Clone)]
pub struct ByteCounter {
    global: IntCounter,
    session: Option<Arc<AtomicU64>>,
}

impl ByteCounter {
    pub(crate) fn new(global: IntCounter) -> Self {
        Self {
            global,
            session: None,
        }
    }

    /// The same edge-wide counter, also adding to `session`.
    pub(crate) fn for_session(&self, session: Arc<AtomicU64>) -> Self {
        Self {
            global: self.global.clone(),
            session: Some(session),
        }
    }

    /// The edge-wide count.
    #[cfg(test)]
    pub(crate) fn get(&self) -> u64 {
        self.global.get()
    }

    #[inline]
    pub(crate) fn inc_by(&self, n: u64) {
        self.global.inc_by(n);
        if let Some(s) = &self.session {
            s.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_globally_and_per_session() {
        let global = IntCounter::new("b", "bytes").unwrap();
        let plain = ByteCounter::new(global.clone());
        let mine = Arc::new(AtomicU64::new(0));
        let session = plain.for_session(mine.clone());
        plain.inc_by(5);
        session.inc_by(7);
        assert_eq!(global.get(), 12);
        assert_eq!(mine.load(Ordering::Relaxed), 7);
    }
}
