//! The one `admit` step every front shares: target + client identity → route → policy →
//! backend, always through the one [`Connector`].
//!
//! [`Admit`] is the narrow context a front gets instead of the whole edge: the host grammar,
//! the routes, the per-remote certificate and token policies, the connector and the metrics of
//! one configuration generation.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::Certificate;
use tokio::net::TcpStream;
use tracing::{info, warn};

use crate::admission::Ticket;
use crate::auth::cert_policy::{
    CertCheck, CertIdentity, CertPolicy, CertRejection, check_user_certificate,
};
use crate::auth::token::{ReplayCache, TokenClaims, TokenPolicy, verify_token};
use crate::bridge::BridgeSettings;
use crate::control_plane::{ControlPlane, GateOpen};
use crate::hostname::{HostGrammar, Target};
use crate::metrics::Metrics;
use crate::reject::{self, Listener, Reason, Rejection};
use crate::route::{Forwarding, Route, RouteTable};
use crate::session::{Sessions, WorkloadExpiry};
use crate::time::unix_now;
use crate::upstream::{Connector, LoginContext, Upstream};

/// Who is asking: the client's address (from a trusted PROXY header, else the TCP peer) and
/// the listener it came in on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Client {
    pub addr: SocketAddr,
    pub listener: Listener,
}

/// Route, policy and backend for one configuration generation.
pub struct Admit {
    pub grammar: HostGrammar,
    pub routes: RouteTable,
    /// Certificate policy per remote name.
    pub remotes: HashMap<String, Arc<CertPolicy>>,
    /// Token policy per remote (front B); remotes without token keys are absent.
    pub tokens: HashMap<String, Arc<TokenPolicy>>,
    pub connector: Arc<Connector>,
    /// `[control_plane]`: the workload gate before the backend is dialled.
    pub control_plane: Option<Arc<ControlPlane>>,
    pub metrics: Arc<Metrics>,
    pub bridge_settings: BridgeSettings,
    /// Open sessions, across generations.
    pub sessions: Arc<Sessions>,
    /// Front B's used token ids, across generations; `None` when tokens may be reused.
    pub token_replay: Option<Arc<std::sync::Mutex<ReplayCache>>>,
}

/// A certificate login the edge accepted, with its backend connection.
pub(crate) struct Admitted {
    pub target: Target,
    pub route: Route,
    pub identity: CertIdentity,
    pub upstream: Upstream,
    /// Forwarding allowed by the route, its remote and the certificate's extensions, all.
    pub forwarding: Forwarding,
    /// What the control plane said (the workload's session expiry).
    pub gate: GateOpen,
}

/// Why a certificate login was not admitted.
pub(crate) enum Denied {
    /// The certificate itself was refused (counted in `ssh_edge_auth_failures_total`): the
    /// client hears only "Permission denied", as from sshd.
    Certificate,
    /// Everything else: the client is told this message (it names the target, never secrets).
    Refused(String),
}

/// A front-B login the edge accepted: the connected backend socket for passthrough.
pub(crate) struct TokenAdmitted {
    pub backend: TcpStream,
    pub backend_addr: String,
    pub target: Target,
    pub claims: TokenClaims,
    pub lifetimes: crate::route::lifetime::Lifetimes,
    pub gate: GateOpen,
}

/// A login waiting for its workload: where progress lines go, and its admission ticket (the
/// login grace stops applying once the certificate is accepted and the wait begins).
pub(crate) struct Waiting<'a> {
    pub progress: &'a (dyn Fn(String) + Send + Sync),
    pub ticket: &'a Ticket,
}

impl Admit {
    /// Counts and logs a rejection (see [`reject::record`]).
    pub(crate) fn reject(&self, client: &Client, rejection: &Rejection) {
        reject::record(&self.metrics, client.listener, client.addr, rejection);
    }

    /// A workload host name (SNI, token claim) → target; a bad one is counted.
    pub(crate) fn parse_host(&self, client: &Client, host: &str) -> Result<Target, String> {
        self.grammar.parse_host(host).map_err(|e| {
            let message = e.to_string();
            self.reject(client, &Rejection::new(Reason::Host(e.reason()), &message));
            message
        })
    }

    /// Front C's user name (`<workload>` or the full host) → target; a bad one is counted.
    pub(crate) fn parse_user_target(&self, client: &Client, user: &str) -> Result<Target, String> {
        self.grammar.parse_user_target(user).map_err(|e| {
            let message = e.to_string();
            self.reject(client, &Rejection::new(Reason::Host(e.reason()), &message));
            message
        })
    }

    fn route(target: &Target, routes: &RouteTable) -> Result<Route, Rejection> {
        routes
            .resolve(target)
            .map_err(|e| Rejection::new(Reason::Route(e.reason()), e.to_string()))
    }

    /// A refused certificate: logged with the peer, key id and serial, counted by reason,
    /// audited. `target` is the host the client asked for (empty if it named none).
    fn certificate_refused(
        &self,
        client: &Client,
        target: &str,
        cert: &Certificate,
        rejection: &CertRejection,
    ) {
        warn!(client = %client.addr, listener = client.listener.as_str(), target, key_id = cert.key_id(),
            serial = cert.serial(), reason = rejection.reason(), detail = %rejection, "certificate refused");
        self.metrics
            .auth_failures
            .with_label_values(&[rejection.reason()])
            .inc();
        self.sessions.audit().emit(
            "auth.denied",
            serde_json::json!({
                "reason": rejection.reason(),
                "key_id": crate::audit::clean(cert.key_id(), 256),
                "serial": cert.serial(),
                "ca_fingerprint": cert.signature_key().fingerprint(russh::keys::HashAlg::Sha256).to_string(),
                "client": client.addr.to_string(),
                "target": target,
            }),
        );
    }

    /// A certificate whose CA signature does not verify: russh refuses it before the policy
    /// (`vendor/russh/PATCHES.md`, patch 8) and tells the edge, which records it as the policy would.
    pub(crate) fn bad_signature(&self, client: &Client, target: &str, cert: &Certificate) {
        self.certificate_refused(client, target, cert, &CertRejection::bad_signature(cert));
    }

    /// Terminating fronts: route → certificate policy → backend login.
    pub(crate) async fn admit_certificate(
        &self,
        client: &Client,
        target: Target,
        cert: &Certificate,
        waiting: Waiting<'_>,
    ) -> Result<Admitted, Denied> {
        let route = Self::route(&target, &self.routes).map_err(|r| {
            self.reject(client, &r);
            Denied::Refused(r.detail)
        })?;
        let Some(policy) = self.remotes.get(target.remote_name()) else {
            return Err(Denied::Refused(format!(
                "{}: remote \"{}\" has no certificate policy",
                target.host,
                target.remote_name()
            )));
        };
        let check = CertCheck {
            cert,
            required_principal: &route.required_principal,
            peer_ip: client.addr.ip(),
            now_unix: unix_now(),
        };
        let identity = check_user_certificate(policy, &check).map_err(|rejection| {
            self.certificate_refused(client, &target.host, cert, &rejection);
            Denied::Certificate
        })?;
        let gate = self
            .gate(client, &target, &route, waiting)
            .await
            .map_err(Denied::Refused)?;
        let who = LoginContext {
            user_key_id: identity.key_id.clone(),
            user_serial: identity.serial,
            user_key_fingerprint: cert
                .public_key()
                .fingerprint(russh::keys::HashAlg::Sha256)
                .to_string(),
            target_host: target.host.clone(),
        };
        let upstream = self
            .connector
            .connect(&route, &who)
            .await
            .map_err(|e| Denied::Refused(format!("{}: {e}", target.host)))?;
        info!(client = %client.addr, listener = client.listener.as_str(), target = %target.host, key_id = %identity.key_id,
            serial = identity.serial, backend = %upstream.addr(), shared = upstream.reused, login_user = %route.login_user, "session authorized");
        // As OpenSSH: permit-port-forwarding covers -L, -D and -R.
        let by_certificate = Forwarding {
            local: identity.permits("permit-port-forwarding"),
            remote: identity.permits("permit-port-forwarding"),
            agent: identity.permits("permit-agent-forwarding"),
        };
        let forwarding = route.forwarding.and(by_certificate);
        Ok(Admitted {
            target,
            route,
            identity,
            upstream,
            forwarding,
            gate,
        })
    }

    /// The control plane's word on the workload (see `control_plane`); without one, every
    /// workload is running. A refusal is counted here; `Err` is the user's message.
    async fn gate(
        &self,
        client: &Client,
        target: &Target,
        route: &Route,
        waiting: Waiting<'_>,
    ) -> Result<GateOpen, String> {
        let Some(cp) = &self.control_plane else {
            return Ok(GateOpen::default());
        };
        // Authenticated: a wake-up may take longer than the login grace.
        waiting.ticket.authenticated();
        cp.admit(
            target,
            &route.backend_addr,
            &self.connector,
            waiting.progress,
        )
        .await
        .map_err(|r| {
            self.reject(
                client,
                &Rejection::new(Reason::Workload(r.reason), &r.message),
            );
            r.message
        })
    }

    /// The re-read of a session's workload expiry (none without a control plane).
    pub(crate) fn workload_expiry(&self, host: &str, gate: GateOpen) -> Option<WorkloadExpiry> {
        let cp = self.control_plane.clone()?;
        let every = cp.settings().expiry_refresh;
        let host = host.to_string();
        Some(WorkloadExpiry {
            at: gate.expires_at,
            refresh_every: every,
            read: Arc::new(move |fresh| {
                let (cp, host) = (cp.clone(), host.clone());
                Box::pin(async move { cp.current_expiry(&host, fresh).await })
            }),
        })
    }

    /// Front B: verified token → target → route → connected backend socket. Every refusal is
    /// counted here.
    pub(crate) async fn admit_token(
        &self,
        client: &Client,
        token: &[u8],
    ) -> Result<TokenAdmitted, Rejection> {
        let result = self.admit_token_inner(client, token).await;
        if let Err(r) = &result {
            self.reject(client, r);
            self.sessions.audit().emit(
                "token.denied",
                serde_json::json!({
                    "reason": r.reason.as_str(),
                    "client": client.addr.to_string(),
                }),
            );
        }
        result
    }

    async fn admit_token_inner(
        &self,
        client: &Client,
        token: &[u8],
    ) -> Result<TokenAdmitted, Rejection> {
        let now = unix_now();
        // The kid selects the remote: try each remote's key set (kids are unique across remotes).
        let mut verified = None;
        let mut last = Rejection::new(
            Reason::Token("unknown_kid"),
            "no remote has token keys configured",
        );
        for (remote, policy) in &self.tokens {
            match verify_token(policy, token, now) {
                Ok(claims) => {
                    // Alive (and so remembered) while the verifier would accept it.
                    let forget_at = claims.exp.saturating_add(policy.max_clock_skew_secs);
                    verified = Some((remote.clone(), claims, forget_at));
                    break;
                }
                Err(e) if e.reason() == "unknown_kid" => {
                    last = Rejection::new(Reason::Token("unknown_kid"), e.to_string())
                }
                Err(e) => return Err(Rejection::new(Reason::Token(e.reason()), e.to_string())),
            }
        }
        let (remote, claims, forget_at) = verified.ok_or(last)?;
        // Spent as soon as it is presented validly signed: two connections racing with one
        // token cannot both pass, whatever happens after.
        if let Some(replay) = &self.token_replay {
            let mut replay = replay.lock().unwrap_or_else(|e| e.into_inner());
            replay
                .check_and_record(&remote, &claims.jti, forget_at, now)
                .map_err(|e| {
                    Rejection::new(
                        Reason::Token(e.reason()),
                        format!(
                            "jti {} of remote \"{remote}\" (sub {}): {e}",
                            crate::text::quote_untrusted(&claims.jti, 128),
                            crate::text::quote_untrusted(&claims.sub, 128)
                        ),
                    )
                })?;
        }
        let target = self
            .grammar
            .parse_host(&claims.host)
            .map_err(|e| Rejection::new(Reason::Token("bad_host"), e.to_string()))?;
        if target.remote_name() != remote {
            return Err(Rejection::new(
                Reason::Token("foreign_workload"),
                format!(
                    "token signed for remote \"{remote}\" names {} of remote \"{}\"",
                    target.host,
                    target.remote_name()
                ),
            ));
        }
        let route = Self::route(&target, &self.routes)?;
        let gate = self.token_gate(&target, &route).await?;
        info!(client = %client.addr, listener = client.listener.as_str(), target = %target.host, sub = %claims.sub, jti = %claims.jti,
            backend = %route.backend_addr, "token accepted");
        let backend = self
            .connector
            .connect_stream(&route.backend_addr)
            .await
            .map_err(|e| Rejection::new(Reason::Backend(e.reason()), e.to_string()))?;
        Ok(TokenAdmitted {
            backend,
            backend_addr: route.backend_addr,
            target,
            claims,
            lifetimes: route.lifetimes,
            gate,
        })
    }

    /// Front B's gate: the helper cannot be shown progress and gives up after 10 s, so a
    /// wake-up holds the status byte at most `token_hold_secs`; then the login is refused
    /// while the wake-up goes on, and the helper's next try lands.
    async fn token_gate(&self, target: &Target, route: &Route) -> Result<GateOpen, Rejection> {
        let Some(cp) = &self.control_plane else {
            return Ok(GateOpen::default());
        };
        let hold = cp.settings().token_hold;
        let admit = cp.admit(target, &route.backend_addr, &self.connector, &|_| {});
        match tokio::time::timeout(hold, admit).await {
            Ok(Ok(open)) => Ok(open),
            Ok(Err(r)) => Err(Rejection::new(Reason::Workload(r.reason), r.message)),
            Err(_) => Err(Rejection::new(
                Reason::Workload("workload_waking"),
                format!(
                    "{}: still waking after {} s; the wake-up goes on for the next try",
                    target.host,
                    hold.as_secs()
                ),
            )),
        }
    }
}
