//! Target → backend: which sshd serves a workload, as whom the edge logs in, and which
//! principal the user's certificate must carry. Pure: no I/O; address resolution is the
//! caller's job (see `upstream`).

use crate::hostname::{ExpandError, Target};

/// One `[[routes]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRule {
    pub kind: String,
    /// `None` = any remote.
    pub remote: Option<String>,
    /// Field equality conditions, e.g. `("job_id", "abc1234")`.
    pub match_fields: Vec<(String, String)>,
    pub backend: String,
    pub login_user: String,
    pub principal: String,
    pub backend_principal: String,
}

/// A route resolved for one target: templates expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `host:port`, still to be resolved.
    pub backend_addr: String,
    pub login_user: String,
    /// The principal the user's certificate must contain.
    pub required_principal: String,
    /// The principal of the certificate minted for the backend login.
    pub backend_principal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
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
    pub fn reason(&self) -> &'static str {
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
}

impl RouteTable {
    pub fn new(rules: Vec<RouteRule>) -> Self {
        Self { rules }
    }

    pub fn resolve(&self, target: &Target) -> Result<Route, RouteError> {
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
        })
    }
}
