//! Target → backend: which sshd serves a workload, as whom the edge logs in, and which
//! principal the user's certificate must carry. Pure: no I/O; address resolution is the
//! caller's job (see `upstream`).

pub(crate) mod dns;
pub(crate) mod dns_cache;
pub(crate) mod lifetime;

use std::collections::HashMap;

use crate::hostname::{ExpandError, Target};

/// Which forwarding a route, a remote or a certificate allows. A session gets what all of
/// them allow: a deny anywhere wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    /// `ssh -L` and `ssh -D` (`direct-tcpip` channels).
    pub local: bool,
    /// `ssh -R` (`tcpip-forward` requests and the `forwarded-tcpip` channels they bring).
    pub remote: bool,
    /// `ssh -A` (`auth-agent-req@openssh.com` and `auth-agent@openssh.com` channels).
    pub agent: bool,
}

impl Forwarding {
    pub(crate) const ALL: Forwarding = Forwarding {
        local: true,
        remote: true,
        agent: true,
    };

    /// What both allow.
    pub(crate) fn and(self, other: Forwarding) -> Forwarding {
        Forwarding {
            local: self.local && other.local,
            remote: self.remote && other.remote,
            agent: self.agent && other.agent,
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteRule {
    pub kind: String,
    /// `None` = any remote.
    pub remote: Option<String>,
    /// Field equality conditions, e.g. `("job_id", "abc1234")`.
    pub match_fields: Vec<(String, String)>,
    pub backend: String,
    pub login_user: String,
    pub principal: String,
    pub backend_principal: String,
    pub forwarding: Forwarding,
    /// This route's lifetime settings (its remote's fill in what it leaves unset).
    pub lifetimes: lifetime::LifetimeSettings,
}

/// A route resolved for one target: templates expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// `host:port`, still to be resolved.
    pub backend_addr: String,
    pub login_user: String,
    /// The principal the user's certificate must contain.
    pub required_principal: String,
    /// The principal of the certificate minted for the backend login.
    pub backend_principal: String,
    /// Forwarding the route and its remote allow (the user's certificate must permit it too).
    pub forwarding: Forwarding,
    /// Idle, maximum and certificate-expiry limits of sessions on this route.
    pub lifetimes: lifetime::Lifetimes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("no route for {host} (kind {kind}, remote {remote})")]
    NoRoute {
        host: String,
        kind: String,
        remote: String,
    },
    #[error("route for {host} is misconfigured: {source}")]
    Template {
        host: String,
        #[source]
        source: ExpandError,
    },
}

impl RouteError {
    /// Stable label for metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            RouteError::NoRoute { .. } => "no_route",
            RouteError::Template { .. } => "route_template",
        }
    }
}

/// First matching rule wins, in config order.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    rules: Vec<RouteRule>,
    /// Per-remote forwarding limits; a remote absent here limits nothing.
    remote_forwarding: HashMap<String, Forwarding>,
    /// Per-remote lifetime settings; routes override them field by field.
    remote_lifetimes: HashMap<String, lifetime::LifetimeSettings>,
}

impl RouteTable {
    pub(crate) fn new(
        rules: Vec<RouteRule>,
        remote_forwarding: HashMap<String, Forwarding>,
    ) -> Self {
        Self {
            rules,
            remote_forwarding,
            remote_lifetimes: HashMap::new(),
        }
    }

    /// The same table with per-remote lifetime settings.
    pub(crate) fn with_lifetimes(
        mut self,
        remotes: HashMap<String, lifetime::LifetimeSettings>,
    ) -> Self {
        self.remote_lifetimes = remotes;
        self
    }

    pub(crate) fn resolve(&self, target: &Target) -> Result<Route, RouteError> {
        let rule = self
            .rules
            .iter()
            .find(|r| {
                r.kind == target.kind
                    && r.remote
                        .as_deref()
                        .is_none_or(|remote| remote == target.remote_name())
                    && r.match_fields
                        .iter()
                        .all(|(k, v)| target.field(k) == Some(v.as_str()))
            })
            .ok_or_else(|| RouteError::NoRoute {
                host: target.host.clone(),
                kind: target.kind.clone(),
                remote: target.remote_name().to_string(),
            })?;
        let expand = |template: &str| {
            target
                .expand(template)
                .map_err(|source| RouteError::Template {
                    host: target.host.clone(),
                    source,
                })
        };
        Ok(Route {
            backend_addr: expand(&rule.backend)?,
            login_user: expand(&rule.login_user)?,
            required_principal: expand(&rule.principal)?,
            backend_principal: expand(&rule.backend_principal)?,
            forwarding: rule.forwarding.and(
                self.remote_forwarding
                    .get(target.remote_name())
                    .copied()
                    .unwrap_or(Forwarding::ALL),
            ),
            lifetimes: rule
                .lifetimes
                .or(self
                    .remote_lifetimes
                    .get(target.remote_name())
                    .copied()
                    .unwrap_or_default())
                .resolve(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hostname::{self, HostGrammar};

    fn grammar() -> HostGrammar {
        let kinds = hostname::default_kinds();
        HostGrammar::new(hostname::DEFAULT_SUFFIX, &kinds, &["tenant-b".to_string()]).unwrap()
    }

    fn rule(kind: &str, remote: Option<&str>, fields: &[(&str, &str)], backend: &str) -> RouteRule {
        RouteRule {
            kind: kind.into(),
            remote: remote.map(str::to_string),
            match_fields: fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            backend: backend.into(),
            login_user: "baseten".into(),
            principal: "{job_id}".into(),
            backend_principal: "{job_id}".into(),
            forwarding: Forwarding::ALL,
            lifetimes: lifetime::LifetimeSettings::default(),
        }
    }

    #[test]
    fn first_matching_rule_wins_and_templates_expand() {
        let table = RouteTable::new(
            vec![
                rule(
                    "training-job",
                    None,
                    &[("job_id", "pinned")],
                    "10.0.0.9:2222",
                ),
                rule(
                    "training-job",
                    Some("tenant-b"),
                    &[],
                    "{job_id}-{node}.b.svc:2222",
                ),
                rule(
                    "training-job",
                    Some("default"),
                    &[],
                    "{job_id}-{node}.training.svc.cluster.local:2222",
                ),
            ],
            HashMap::new(),
        );
        let g = grammar();
        let r = table
            .resolve(
                &g.parse_host("training-job-pinned-3.ssh.baseten.co")
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(r.backend_addr, "10.0.0.9:2222");
        let r = table
            .resolve(
                &g.parse_host("training-job-abc1234-0.ssh.baseten.co")
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(r.backend_addr, "abc1234-0.training.svc.cluster.local:2222");
        assert_eq!(r.required_principal, "abc1234");
        assert_eq!(r.login_user, "baseten");
        let r = table
            .resolve(
                &g.parse_host("training-job-abc1234-1.tenant-b.ssh.baseten.co")
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(r.backend_addr, "abc1234-1.b.svc:2222");
    }

    #[test]
    fn no_route_and_bad_template_are_errors_naming_the_host() {
        let table = RouteTable::new(
            vec![rule("training-job", Some("default"), &[], "{job_id}:22")],
            HashMap::new(),
        );
        let g = grammar();
        let err = table
            .resolve(&g.parse_host("model-m1-d1.ssh.baseten.co").unwrap())
            .unwrap_err();
        assert_eq!(err.reason(), "no_route");
        assert!(
            err.to_string().contains("model-m1-d1.ssh.baseten.co"),
            "{err}"
        );
        // tenant-b is not served by a default-only route
        let err = table
            .resolve(
                &g.parse_host("training-job-a-0.tenant-b.ssh.baseten.co")
                    .unwrap(),
            )
            .unwrap_err();
        assert_eq!(err.reason(), "no_route");

        let table = RouteTable::new(
            vec![rule("model", None, &[], "{replica_id}.svc:22")],
            HashMap::new(),
        );
        let err = table
            .resolve(&g.parse_host("model-m1-d1.ssh.baseten.co").unwrap())
            .unwrap_err();
        assert_eq!(err.reason(), "route_template");
        assert!(err.to_string().contains("replica_id"), "{err}");
    }

    #[test]
    fn forwarding_is_what_both_the_route_and_its_remote_allow() {
        let mut no_agent = rule("training-job", None, &[], "{job_id}:22");
        no_agent.forwarding.agent = false;
        let tenant_b_no_remote = Forwarding {
            remote: false,
            ..Forwarding::ALL
        };
        let table = RouteTable::new(
            vec![no_agent],
            HashMap::from([("tenant-b".to_string(), tenant_b_no_remote)]),
        );
        let g = grammar();
        let default = table
            .resolve(&g.parse_host("training-job-a-0.ssh.baseten.co").unwrap())
            .unwrap();
        assert_eq!(
            default.forwarding,
            Forwarding {
                local: true,
                remote: true,
                agent: false
            }
        );
        let b = table
            .resolve(
                &g.parse_host("training-job-a-0.tenant-b.ssh.baseten.co")
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(
            b.forwarding,
            Forwarding {
                local: true,
                remote: false,
                agent: false
            }
        );
    }
}
