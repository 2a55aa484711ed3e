//! The hyper adapter for the control-plane routes (`/v1/edge/...`, `/v1/admin/...`, Bearer
//! tokens). Decisions come from [`super::control`]; this file reads the request, spawns what an
//! activation needs and writes the answer.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Request, Response};
use serde_json::{Value, json};

use super::control::{
    self, Activated, ControlError, ControlPlane, ControlRoute, SetExpiry, SetState, Side,
};
use super::http::{json_response, read_body};
use crate::text::quote_untrusted;
use crate::time::unix_now;

/// Answers a request whose path is on `side` of the control plane.
pub(crate) async fn handle(
    control: &Arc<ControlPlane>,
    side: Side,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path().to_string();
    let (status, body) = match respond(control, side, req).await {
        Ok((status, body)) => {
            let state = body["state"].as_str().unwrap_or("");
            if method == "GET" {
                tracing::debug!(%peer, method, path = %quote_untrusted(&path, 200), status, state, "issuer: control request served");
            } else {
                tracing::info!(%peer, method, path = %quote_untrusted(&path, 200), status, state, "issuer: control request served");
            }
            (status, body)
        }
        Err(e) => {
            tracing::info!(%peer, method = %quote_untrusted(&method, 20), path = %quote_untrusted(&path, 200), status = e.status(), error = %e, "issuer: control request refused");
            let allowed = match &e {
                ControlError::MethodNotAllowed { allowed, .. } => Some(*allowed),
                _ => None,
            };
            let mut response = json_response(e.status(), &json!({ "error": e.to_string() }));
            let headers = response.headers_mut();
            if e.status() == 401 {
                headers.insert(WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            }
            if let Some(allowed) = allowed {
                headers.insert(ALLOW, allowed.parse().expect("static header"));
            }
            return response;
        }
    };
    json_response(status, &body)
}

async fn respond(
    control: &Arc<ControlPlane>,
    side: Side,
    req: Request<Incoming>,
) -> Result<(u16, Value), ControlError> {
    let expected = control.token_sha256(side)?;
    let route = control::route(req.method().as_str(), req.uri().path())?;
    let token =
        control::bearer_from_header(req.headers().get(AUTHORIZATION).map(|v| v.as_bytes()))?;
    control::check_bearer(expected, token)?;
    let body = read_body(req).await.map_err(ControlError::Body)?;
    match route {
        ControlRoute::EdgeStatus { host } => Ok((200, control.status(&host).edge_json())),
        ControlRoute::AdminStatus { host } => {
            let status = control.status(&host);
            if status.state.is_none() {
                return Err(ControlError::UnknownWorkload {
                    host: crate::text::escape_untrusted(&host, crate::hostname::MAX_NAME),
                });
            }
            Ok((200, status.admin_json()))
        }
        ControlRoute::EdgeActivate { host } => {
            control::check_activate_body(&body)?;
            let (activated, status) = control.activate(&host);
            let code = activated.http_status();
            if let Activated::Started(activation) = activated {
                match activation {
                    Some(a) => super::activate::spawn(control.clone(), a),
                    None => tracing::info!(
                        host = %quote_untrusted(&host, crate::hostname::MAX_NAME),
                        "issuer: workload activated (no on_activate command), running"
                    ),
                }
            }
            Ok((code, status.edge_json()))
        }
        ControlRoute::AdminState { host } => {
            let req: SetState = control::parse_body(
                &body,
                "{\"state\": \"running|activatable|starting|stopped\", \"message\": \"...\"}",
            )?;
            let status = control.set_state(&host, req)?;
            tracing::info!(host = %quote_untrusted(&host, crate::hostname::MAX_NAME), state = status.state.map_or("", |s| s.as_str()), "issuer: admin set workload state");
            Ok((200, status.admin_json()))
        }
        ControlRoute::AdminExpiry { host } => {
            let req: SetExpiry = control::parse_body(
                &body,
                "{\"session_expires_at\": <unix seconds or null>} or {\"extend_secs\": <seconds>}",
            )?;
            let status = control.set_expiry(&host, req, unix_now())?;
            tracing::info!(host = %quote_untrusted(&host, crate::hostname::MAX_NAME), session_expires_at = ?status.session_expires_at, "issuer: admin set session expiry");
            Ok((200, status.admin_json()))
        }
    }
}
