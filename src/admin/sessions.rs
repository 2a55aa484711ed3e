//! The sessions API of the admin endpoint (pure: request in, response out):
//!
//! - `GET /sessions?workload=&key_id=&serial=&remote=` — the live sessions, as JSON;
//! - `GET /sessions/{id}`;
//! - `DELETE /sessions/{id}?reason=…` — ends one session; a terminating front tells the client
//!   `ssh-edge: session ended by an administrator: <reason>`, front B closes both sockets;
//! - `POST /sessions/kill?key_id=&serial=&workload=&remote=&reason=` — ends every session
//!   matching all the given fields (at least one is required).

use hyper::StatusCode;
use serde_json::json;

use crate::session::{Selector, Sessions};

/// Status, content type, body.
pub(super) type Response = (StatusCode, &'static str, String);

fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (status, "application/json", format!("{body}\n"))
}

fn error(status: StatusCode, message: &str) -> Response {
    json_response(status, json!({ "error": message }))
}

/// The selector and reason in a query string; `Err` names a bad field.
fn parse_query(query: &str) -> Result<(Selector, Option<String>), String> {
    let mut selector = Selector::default();
    let mut reason = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "key_id" => selector.key_id = Some(v.into_owned()),
            "serial" => {
                selector.serial = Some(v.parse().map_err(|_| {
                    format!(
                        "serial: \"{}\" is not a number",
                        crate::text::escape_untrusted(&v, 40)
                    )
                })?)
            }
            "workload" => selector.workload = Some(v.into_owned()),
            "remote" => selector.remote = Some(v.into_owned()),
            "sub" => selector.sub = Some(v.into_owned()),
            "reason" => reason = Some(crate::text::escape_untrusted(&v, 200)),
            other => {
                return Err(format!(
                    "unknown parameter \"{}\"; expected key_id, serial, workload, remote, sub, reason",
                    crate::text::escape_untrusted(other, 40)
                ));
            }
        }
    }
    Ok((selector, reason))
}

/// Answers a request under `/sessions`, or `None` for any other path.
pub(super) fn route(sessions: &Sessions, method: &str, target: &str) -> Option<Response> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path.strip_prefix("/sessions")?;
    let (selector, reason) = match parse_query(query) {
        Ok(q) => q,
        Err(e) => return Some(error(StatusCode::BAD_REQUEST, &e)),
    };
    let reason = reason.unwrap_or_else(|| "no reason given".into());
    Some(match (method, rest) {
        ("GET", "" | "/") => json_response(
            StatusCode::OK,
            json!({ "sessions": sessions.list(&selector) }),
        ),
        ("POST", "/kill") if selector.is_empty() => error(
            StatusCode::BAD_REQUEST,
            "say which sessions: key_id, serial, workload, remote and/or sub",
        ),
        ("POST", "/kill") => {
            let killed = sessions.kill_matching(&selector, &reason, &format!("POST {target}"));
            tracing::warn!(count = killed.len(), ?selector, %reason, "sessions ended by an administrator");
            json_response(StatusCode::OK, json!({ "killed": killed }))
        }
        (method, id) => {
            let Some(id) = id.strip_prefix('/').and_then(|id| id.parse::<u64>().ok()) else {
                return Some(error(
                    StatusCode::NOT_FOUND,
                    "expected /sessions, /sessions/{id} or POST /sessions/kill",
                ));
            };
            let Some(info) = sessions.get(id) else {
                return Some(error(StatusCode::NOT_FOUND, &format!("no session {id}")));
            };
            match method {
                "GET" => json_response(StatusCode::OK, json!(info)),
                "DELETE" => {
                    sessions.kill_by(id, &reason, &format!("DELETE {target}"));
                    tracing::warn!(id, %reason, "session ended by an administrator");
                    json_response(StatusCode::OK, json!({ "killed": [info] }))
                }
                _ => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use GET or DELETE on /sessions/{id}",
                ),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use prometheus::IntGauge;

    use super::*;
    use crate::session::SessionInfo;

    fn sessions() -> std::sync::Arc<Sessions> {
        Sessions::new(IntGauge::new("s", "sessions").unwrap())
    }

    #[test]
    fn list_get_kill() {
        let s = sessions();
        let a = s.open(SessionInfo {
            key_id: Some("alice".into()),
            target: "training-job-a-0.ssh.baseten.co".into(),
            ..SessionInfo::default()
        });
        let (status, _, body) = route(&s, "GET", "/sessions?key_id=alice").unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("\"key_id\":\"alice\""), "{body}");
        let (_, _, body) = route(&s, "GET", "/sessions?key_id=bob").unwrap();
        assert!(body.contains("\"sessions\":[]"), "{body}");
        let id = a.id();
        assert_eq!(
            route(&s, "GET", &format!("/sessions/{id}")).unwrap().0,
            StatusCode::OK
        );
        assert_eq!(
            route(&s, "GET", "/sessions/999").unwrap().0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            route(&s, "POST", "/sessions/kill").unwrap().0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            route(&s, "GET", "/sessions?serial=x").unwrap().0,
            StatusCode::BAD_REQUEST
        );
        // What the caller sent comes back escaped and capped, as in every other message.
        let (_, _, body) = route(&s, "GET", "/sessions?serial=1%1B%5B31m%0Aforged").unwrap();
        assert!(
            !body.contains('\x1b') && !body.contains("\\u001b"),
            "{body}"
        );
        assert!(body.contains("serial: "), "{body}");
        assert_eq!(
            route(&s, "GET", "/sessions?color=red").unwrap().0,
            StatusCode::BAD_REQUEST
        );
        let (status, _, body) =
            route(&s, "DELETE", &format!("/sessions/{id}?reason=leaked%20key")).unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(route(&s, "GET", "/metrics").is_none());
    }
}
