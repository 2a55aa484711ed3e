//! Upstream multiplexing (`backend.multiplex`): user connections with the same backend login
//! share one backend SSH connection, each as its own channels, as OpenSSH's ControlMaster does
//! on the client side. A second `ssh host …` then skips the backend's TCP connect, key
//! exchange and login.
//!
//! Only logins that are the same in every way the backend can see are shared: same backend,
//! login user and minted principal, *and* the same user certificate (key fingerprint, key id,
//! serial). The minted certificate names that user, so the backend's logs stay exact, and
//! one user's sessions never ride on another's login. A shared connection serves at most
//! `backend.multiplex_max_clients` user connections (sshd's `MaxSessions`, default 10, caps
//! the channels on it), and closes `backend.multiplex_idle_secs` after its last user left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;

use super::links::{ClientLink, ClientLinks};
use super::{BackendHandler, LoginContext};
use crate::route::Route;

/// One logged-in backend connection, used by one or (multiplexed) several user connections.
pub(crate) struct BackendConn {
    pub handle: client::Handle<BackendHandler>,
    pub addr: String,
    pub links: Arc<ClientLinks>,
    /// User connections on it; changed only under the pool's lock.
    users: AtomicUsize,
}

impl BackendConn {
    pub(crate) fn new(
        handle: client::Handle<BackendHandler>,
        addr: String,
        links: Arc<ClientLinks>,
    ) -> Self {
        Self {
            handle,
            addr,
            links,
            users: AtomicUsize::new(1),
        }
    }
}

/// What must match for two user connections to share a backend connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ShareKey {
    backend_addr: String,
    login_user: String,
    backend_principal: String,
    user_key_fingerprint: String,
    user_key_id: String,
    user_serial: u64,
}

impl ShareKey {
    pub(crate) fn new(route: &Route, who: &LoginContext) -> Self {
        Self {
            backend_addr: route.backend_addr.clone(),
            login_user: route.login_user.clone(),
            backend_principal: route.backend_principal.clone(),
            user_key_fingerprint: who.user_key_fingerprint.clone(),
            user_key_id: who.user_key_id.clone(),
            user_serial: who.user_serial,
        }
    }
}

/// The shared backend connections of one edge.
pub(crate) struct Pool {
    conns: Mutex<HashMap<ShareKey, Vec<Arc<BackendConn>>>>,
    idle: Duration,
    max_clients: usize,
}

impl Pool {
    pub(crate) fn new(idle: Duration, max_clients: usize) -> Arc<Self> {
        Arc::new(Self {
            conns: Mutex::new(HashMap::new()),
            idle,
            max_clients: max_clients.max(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ShareKey, Vec<Arc<BackendConn>>>> {
        self.conns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A live connection for `key` with room for one more user, counted as used.
    pub(crate) fn checkout(&self, key: &ShareKey) -> Option<Arc<BackendConn>> {
        let mut conns = self.lock();
        let list = conns.get_mut(key)?;
        list.retain(|c| !c.handle.is_closed());
        let conn = list
            .iter()
            .find(|c| c.users.load(Ordering::SeqCst) < self.max_clients)?
            .clone();
        conn.users.fetch_add(1, Ordering::SeqCst);
        Some(conn)
    }

    /// Offers a new connection (with its first user) for sharing.
    pub(crate) fn insert(&self, key: ShareKey, conn: Arc<BackendConn>) {
        self.lock().entry(key).or_default().push(conn);
    }

    /// A user left `conn`; when it was the last, close it after the idle time unless a new
    /// user arrived meanwhile.
    fn release(self: &Arc<Self>, key: ShareKey, conn: Arc<BackendConn>) {
        let now_idle = {
            let _guard = self.lock();
            conn.users.fetch_sub(1, Ordering::SeqCst) == 1
        };
        if !now_idle {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool = self.clone();
        runtime.spawn(async move {
            tokio::time::sleep(pool.idle).await;
            let close = {
                let mut conns = pool.lock();
                let idle = conn.users.load(Ordering::SeqCst) == 0;
                if idle && let Some(list) = conns.get_mut(&key) {
                    list.retain(|c| !Arc::ptr_eq(c, &conn));
                    if list.is_empty() {
                        conns.remove(&key);
                    }
                }
                idle
            };
            if close {
                let _ = conn
                    .handle
                    .disconnect(russh::Disconnect::ByApplication, "idle", "en")
                    .await;
            }
        });
    }
}

/// One user connection's use of a backend connection. Dropping it releases the connection:
/// closed at once when not shared, else kept for the idle time with this user's `ssh -R`
/// listeners cancelled.
pub(crate) struct Upstream {
    conn: Arc<BackendConn>,
    link_id: Option<u64>,
    pooled: Option<(Arc<Pool>, ShareKey)>,
    /// Whether this login rode on an existing backend connection.
    pub reused: bool,
}

impl Upstream {
    pub(crate) fn new(
        conn: Arc<BackendConn>,
        pooled: Option<(Arc<Pool>, ShareKey)>,
        reused: bool,
    ) -> Self {
        Self {
            conn,
            link_id: None,
            pooled,
            reused,
        }
    }

    pub(crate) fn handle(&self) -> &client::Handle<BackendHandler> {
        &self.conn.handle
    }

    pub(crate) fn addr(&self) -> &str {
        &self.conn.addr
    }

    /// Lets channels the backend opens (`-R`, agent) reach this user's connection.
    pub(crate) fn attach(&mut self, link: ClientLink) {
        if self.link_id.is_none() {
            self.link_id = Some(self.conn.links.add(link));
        }
    }

    pub(crate) fn note_remote_forward(&self, address: &str, port: u32) {
        if let Some(id) = self.link_id {
            self.conn.links.note_remote_forward(id, address, port);
        }
    }

    pub(crate) fn forget_remote_forward(&self, address: &str, port: u32) {
        if let Some(id) = self.link_id {
            self.conn.links.forget_remote_forward(id, address, port);
        }
    }

    pub(crate) fn note_agent(&self) {
        if let Some(id) = self.link_id {
            self.conn.links.note_agent(id);
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let listeners = self
            .link_id
            .map(|id| self.conn.links.remove(id))
            .unwrap_or_default();
        let Some((pool, key)) = self.pooled.take() else {
            return;
        };
        if !listeners.is_empty()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let conn = self.conn.clone();
            runtime.spawn(async move {
                for (address, port) in listeners {
                    let _ = conn.handle.cancel_tcpip_forward(address, port).await;
                }
            });
        }
        pool.release(key, self.conn.clone());
    }
}
