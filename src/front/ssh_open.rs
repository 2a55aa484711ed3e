//! The step after a successful login: count it, register the session (kill switch, byte
//! counters, lifetimes) and attach the client to its backend connection.

use russh::Disconnect;
use russh::server::Session;

use super::{EdgeSession, lock};
use crate::session::SessionInfo;
use crate::upstream::ClientLink;

impl EdgeSession {
    /// Opens the session of an accepted login (not of a refused one, which only disconnects).
    pub(super) fn open_session(&mut self, session: &mut Session) {
        self.ticket.authenticated();
        self.admit
            .metrics
            .logins
            .with_label_values(&[self.front.as_str()])
            .inc();
        if let Some(login) = &self.login {
            let open = self.admit.sessions.open(SessionInfo {
                front: self.front.as_str().into(),
                client: self.client.addr.to_string(),
                key_id: Some(login.identity.key_id.clone()),
                serial: Some(login.identity.serial),
                ca_fingerprint: Some(login.identity.ca_fingerprint.clone()),
                target: login.target.host.clone(),
                remote: login.target.remote_name().to_string(),
                backend: login.upstream.addr().to_string(),
                ..SessionInfo::default()
            });
            // An administrator's kill ends the session with a message the client prints.
            let killed = open.killed();
            let handle = session.handle();
            tokio::spawn(async move {
                if let Some(reason) = killed.await {
                    let _ = handle
                        .disconnect(
                            Disconnect::ByApplication,
                            format!("ssh-edge: {reason}"),
                            "en".into(),
                        )
                        .await;
                }
            });
            self.bridge.up_bytes = self.bridge.up_bytes.for_session(open.stats().up.clone());
            self.bridge.down_bytes = self
                .bridge
                .down_bytes
                .for_session(open.stats().down.clone());
            // Lifetimes: idle, maximum time, certificate expiry; warnings go to stderr.
            let now = crate::time::unix_now();
            let lifetimes = login.route.lifetimes;
            let deadline = crate::route::lifetime::deadline(
                &lifetimes,
                Some(login.identity.valid_before),
                now,
            );
            let (channels, handle) = (self.session_channels.clone(), session.handle());
            let expiry = self.admit.workload_expiry(&login.target.host, login.gate);
            open.spawn_lifetimes(lifetimes, deadline, expiry, move |text| {
                let ids = lock(&channels).clone();
                let handle = handle.clone();
                tokio::spawn(async move {
                    for id in ids {
                        let _ = handle.extended_data(id, 1, text.clone().into_bytes()).await;
                    }
                });
            });
            self.open = Some(open);
        }
        if let Some(login) = &mut self.login {
            login.upstream.attach(ClientLink {
                handle: session.handle(),
                bridge: self.bridge.clone(),
                forwarding: login.forwarding,
            });
        }
    }
}
