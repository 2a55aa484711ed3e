//! Which user connection gets a channel the backend opens. A backend connection may carry
//! several user connections (upstream multiplexing), so a `forwarded-tcpip` channel goes to
//! the user who asked the backend to listen on that port (`ssh -R`), and an agent channel to
//! the newest user who forwarded an agent (`ssh -A`). sshd does not say which session an
//! agent channel is for; all users of one backend connection hold the same certificate (see
//! `pool`), so this is the same person's agent, as with OpenSSH's ControlMaster.
//!
//! The selection logic is generic over the link type so it is unit tested without sessions.

use std::sync::Mutex;

/// The way back to one user's connection, with what that user may forward.
#[derive(Clone)]
pub struct ClientLink {
    pub handle: russh::server::Handle,
    pub bridge: crate::bridge::BridgeSettings,
    pub forwarding: crate::route::Forwarding,
}

struct Entry<L> {
    id: u64,
    link: L,
    /// `(address, port)` the backend listens on for this user (`ssh -R`).
    remote_forwards: Vec<(String, u32)>,
    agent: bool,
}

/// The user connections on one backend connection.
pub struct ClientLinks<L = ClientLink> {
    entries: Mutex<Vec<Entry<L>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl<L> Default for ClientLinks<L> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }
}

impl<L: Clone> ClientLinks<L> {
    fn with<T>(&self, f: impl FnOnce(&mut Vec<Entry<L>>) -> T) -> T {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut entries)
    }

    /// Registers a user connection; returns its id.
    pub(crate) fn add(&self, link: L) -> u64 {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.with(|e| {
            e.push(Entry {
                id,
                link,
                remote_forwards: Vec::new(),
                agent: false,
            })
        });
        id
    }

    /// Unregisters a user connection; returns the remote forwards it still had, which the
    /// caller cancels if the backend connection lives on.
    pub(crate) fn remove(&self, id: u64) -> Vec<(String, u32)> {
        self.with(|e| match e.iter().position(|x| x.id == id) {
            Some(i) => e.remove(i).remote_forwards,
            None => Vec::new(),
        })
    }

    pub(crate) fn note_remote_forward(&self, id: u64, address: &str, port: u32) {
        self.with(|e| {
            if let Some(x) = e.iter_mut().find(|x| x.id == id) {
                x.remote_forwards.push((address.to_string(), port));
            }
        })
    }

    pub(crate) fn forget_remote_forward(&self, id: u64, address: &str, port: u32) {
        self.with(|e| {
            if let Some(x) = e.iter_mut().find(|x| x.id == id) {
                x.remote_forwards
                    .retain(|(a, p)| !(a == address && *p == port));
            }
        })
    }

    pub(crate) fn note_agent(&self, id: u64) {
        self.with(|e| {
            if let Some(x) = e.iter_mut().find(|x| x.id == id) {
                x.agent = true;
            }
        })
    }

    /// The user who asked for a listener on `address:port`. sshd reports the address as
    /// requested, but a client may have asked for `localhost` and see it as another spelling,
    /// so a port-only match is the fallback.
    pub(crate) fn for_forwarded_tcpip(&self, address: &str, port: u32) -> Option<L> {
        self.with(|e| {
            let exact = e.iter().find(|x| {
                x.remote_forwards
                    .iter()
                    .any(|(a, p)| a == address && *p == port)
            });
            exact
                .or_else(|| {
                    e.iter()
                        .find(|x| x.remote_forwards.iter().any(|(_, p)| *p == port))
                })
                .map(|x| x.link.clone())
        })
    }

    /// The newest user who forwarded an agent.
    pub(crate) fn for_agent(&self) -> Option<L> {
        self.with(|e| e.iter().rev().find(|x| x.agent).map(|x| x.link.clone()))
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.with(|e| e.len())
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_connections_go_to_the_user_who_asked_for_the_port() {
        let links = ClientLinks::<&str>::default();
        let alice = links.add("alice");
        let bob = links.add("bob");
        links.note_remote_forward(alice, "127.0.0.1", 8080);
        links.note_remote_forward(bob, "localhost", 9090);
        assert_eq!(links.for_forwarded_tcpip("127.0.0.1", 8080), Some("alice"));
        assert_eq!(links.for_forwarded_tcpip("localhost", 9090), Some("bob"));
        // Another spelling of the address: matched by port.
        assert_eq!(links.for_forwarded_tcpip("::1", 9090), Some("bob"));
        // Nobody asked for this port.
        assert_eq!(links.for_forwarded_tcpip("127.0.0.1", 7070), None);
        links.forget_remote_forward(alice, "127.0.0.1", 8080);
        assert_eq!(links.for_forwarded_tcpip("127.0.0.1", 8080), None);
    }

    #[test]
    fn agent_channels_go_to_the_newest_user_who_forwarded_an_agent() {
        let links = ClientLinks::<&str>::default();
        assert_eq!(links.for_agent(), None);
        let alice = links.add("alice");
        let bob = links.add("bob");
        let _carol = links.add("carol");
        links.note_agent(alice);
        assert_eq!(links.for_agent(), Some("alice"));
        links.note_agent(bob);
        assert_eq!(links.for_agent(), Some("bob"));
        links.remove(bob);
        assert_eq!(links.for_agent(), Some("alice"));
    }

    #[test]
    fn removing_a_user_returns_the_listeners_to_cancel() {
        let links = ClientLinks::<&str>::default();
        let alice = links.add("alice");
        links.note_remote_forward(alice, "127.0.0.1", 8080);
        links.note_remote_forward(alice, "127.0.0.1", 8081);
        assert_eq!(links.len(), 1);
        let left = links.remove(alice);
        assert_eq!(
            left,
            vec![
                ("127.0.0.1".to_string(), 8080),
                ("127.0.0.1".to_string(), 8081)
            ]
        );
        assert!(links.is_empty());
        assert_eq!(links.remove(alice), Vec::new());
    }
}
