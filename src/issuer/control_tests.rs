//! The control plane's state table: transitions, dedup, admin changes, routes, bearer checks.

use std::sync::Arc;

use super::control::*;
use super::workload::*;
use super::workload_tests::{SUFFIX, job, key, model};

fn spec(trigger: Trigger, on_activate: Option<&str>) -> Spec {
    Spec {
        trigger,
        state: trigger.initial_state(),
        message: None,
        session_expires_at: None,
        on_activate: on_activate.map(str::to_string),
    }
}

/// `wake1` (on demand, with a command), `bare1` (on demand, no command), `hold1` (on failure),
/// `run1` (on startup), all in the default tenant, and model `m1`/`d1` of tenant-b on demand.
fn plane() -> ControlPlane {
    ControlPlane::new(
        SUFFIX,
        Some(super::api::digest_api_key("edge-token")),
        None,
        &[
            (
                key("default", job("wake1")),
                spec(Trigger::OnDemand, Some("true")),
            ),
            (key("default", job("bare1")), spec(Trigger::OnDemand, None)),
            (key("default", job("hold1")), spec(Trigger::OnFailure, None)),
            (
                key("default", job("run1")),
                spec(Trigger::OnStartup, Some("x")),
            ),
            (
                key("tenant-b", model("m1", "d1")),
                spec(Trigger::OnDemand, Some("true")),
            ),
        ],
    )
}

const WAKE: &str = "training-job-wake1-0.ssh.test";

#[test]
fn status_json_shapes() {
    let p = plane();
    assert_eq!(
        p.status(WAKE).edge_json(),
        serde_json::json!({"state": "activatable", "session_expires_at": null,
            "message": "training job wake1 is asleep (on-demand session); connecting wakes it"})
    );
    assert_eq!(
        p.status("training-job-run1-3.ssh.test").admin_json(),
        serde_json::json!({"state": "running", "session_expires_at": null, "message": null, "activations": 0, "activate_requests": 0})
    );
    // Known id, wrong tenant: unknown.
    let unknown = p.status("training-job-wake1-0.tenant-b.ssh.test");
    assert_eq!(
        unknown.edge_json(),
        serde_json::json!({"state": "unknown", "session_expires_at": null,
            "message": "no workload named training-job-wake1-0.tenant-b.ssh.test"})
    );
    // Hostile hosts are escaped in the message.
    let odd = p.status("x\"\n");
    assert_eq!(odd.message.as_deref(), Some("no workload named x\\\"\\n"));
}

#[test]
fn activation_goes_starting_then_running() {
    let p = plane();
    let (outcome, status) = p.activate(WAKE);
    let Activated::Started(Some(activation)) = outcome else {
        panic!("not started: {outcome:?}")
    };
    assert_eq!(activation.host, WAKE);
    assert_eq!(activation.command, "true");
    assert_eq!(activation.key, key("default", job("wake1")));
    assert_eq!(status.state, Some(State::Starting));
    assert_eq!(
        status.message.as_deref(),
        Some("training job wake1 is starting")
    );
    assert_eq!(status.activations, 1);
    // Another node of the same job, while starting: nothing new.
    let (again, status) = p.activate("TRAINING-JOB-WAKE1-7.ssh.test.");
    assert_eq!(again, Activated::Underway);
    assert_eq!(again.http_status(), 200);
    assert_eq!(status.activations, 1);
    assert!(p.finish(&activation, Ok(())));
    let status = p.status(WAKE);
    assert_eq!((status.state, status.message), (Some(State::Running), None));
    assert_eq!(p.activate(WAKE).0, Activated::Underway);
    assert_eq!(p.status(WAKE).activations, 1);
}

#[test]
fn failed_activation_returns_to_activatable_and_can_retry() {
    let p = plane();
    let (Activated::Started(Some(first)), _) = p.activate(WAKE) else {
        panic!("not started")
    };
    assert!(p.finish(&first, Err("exit status 1".into())));
    let status = p.status(WAKE);
    assert_eq!(status.state, Some(State::Activatable));
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.ends_with("(last activation failed: exit status 1)")),
        "{status:?}"
    );
    let (Activated::Started(Some(second)), status) = p.activate(WAKE) else {
        panic!("no retry")
    };
    assert_eq!(status.activations, 2);
    assert_eq!(
        status.message.as_deref(),
        Some("training job wake1 is starting")
    );
    // The first run's late report does not touch the second activation.
    assert!(!p.finish(&first, Ok(())));
    assert_eq!(p.status(WAKE).state, Some(State::Starting));
    assert!(p.finish(&second, Ok(())));
}

#[test]
fn concurrent_activations_start_one_run() {
    let p = Arc::new(plane());
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let p = p.clone();
            std::thread::spawn(move || p.activate(WAKE).0)
        })
        .collect();
    let outcomes: Vec<Activated> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let started = outcomes
        .iter()
        .filter(|o| matches!(o, Activated::Started(Some(_))))
        .count();
    assert_eq!(started, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| o.http_status() != 409));
    assert_eq!(p.status(WAKE).activations, 1);
}

#[test]
fn without_a_command_activation_is_immediate() {
    let p = plane();
    let (outcome, status) = p.activate("training-job-bare1-0.ssh.test");
    assert_eq!(outcome, Activated::Started(None));
    assert_eq!(outcome.http_status(), 202);
    assert_eq!(
        (status.state, status.activations),
        (Some(State::Running), 0)
    );
}

#[test]
fn stopped_and_unknown_refuse_activation() {
    let p = plane();
    let (outcome, status) = p.activate("training-job-hold1-0.ssh.test");
    assert_eq!(
        (outcome.http_status(), status.state),
        (409, Some(State::Stopped))
    );
    assert!(
        status
            .message
            .is_some_and(|m| m.contains("trigger on_failure"))
    );
    for host in [
        "training-job-nope1-0.ssh.test",
        "garbage",
        "model-m1-d1.ssh.test",
    ] {
        let (outcome, status) = p.activate(host);
        assert_eq!(
            (outcome, status.state),
            (Activated::Refused, None),
            "{host}"
        );
        assert_eq!(status.edge_json()["state"], "unknown");
    }
}

#[test]
fn sign_wakes_only_asleep_on_demand_workloads() {
    let p = plane();
    let m = key("tenant-b", model("m1", "d1"));
    let host = "model-m1-d1-0.tenant-b.ssh.test";
    let Some(Some(activation)) = p.activate_on_sign(&m, host) else {
        panic!("sign did not wake the model")
    };
    assert_eq!(activation.host, host);
    assert_eq!(p.activate_on_sign(&m, host), None, "already starting");
    assert_eq!(p.status(host).activations, 1);
    // on_startup, on_failure and unconfigured workloads are left alone.
    let run = p.set_state("training-job-run1-0.ssh.test", set("activatable", None));
    assert!(run.is_ok());
    assert_eq!(p.activate_on_sign(&key("default", job("run1")), "h"), None);
    assert_eq!(p.activate_on_sign(&key("default", job("hold1")), "h"), None);
    assert_eq!(p.activate_on_sign(&key("default", job("other")), "h"), None);
    assert_eq!(
        p.activate_on_sign(&key("default", job("bare1")), "h"),
        Some(None)
    );
}

fn set(state: &str, message: Option<Option<&str>>) -> SetState {
    SetState {
        state: state.into(),
        message: message.map(|m| m.map(str::to_string)),
    }
}

#[test]
fn admin_sets_state_and_message() {
    let p = plane();
    let (Activated::Started(Some(activation)), _) = p.activate(WAKE) else {
        panic!("not started")
    };
    let status = p
        .set_state(WAKE, set("stopped", Some(Some("maintenance until 5pm"))))
        .unwrap();
    assert_eq!(status.state, Some(State::Stopped));
    assert_eq!(status.message.as_deref(), Some("maintenance until 5pm"));
    // The overtaken run's report is ignored.
    assert!(!p.finish(&activation, Ok(())));
    // A missing message keeps it, null clears it.
    let status = p.set_state(WAKE, set("stopped", None)).unwrap();
    assert_eq!(status.message.as_deref(), Some("maintenance until 5pm"));
    let status = p.set_state(WAKE, set("stopped", Some(None))).unwrap();
    assert_eq!(
        status.message.as_deref(),
        Some("training job wake1 has stopped")
    );
    assert_eq!(
        p.set_state(WAKE, set("activatable", None)).unwrap().state,
        Some(State::Activatable)
    );
    let e = p.set_state(WAKE, set("unknown", None)).unwrap_err();
    assert_eq!(e.status(), 400);
    assert!(matches!(
        p.set_state(WAKE, set("running", Some(Some("a\nb")))),
        Err(ControlError::BadMessage(_))
    ));
    let e = p
        .set_state("training-job-nope1-0.ssh.test", set("running", None))
        .unwrap_err();
    assert_eq!(e.status(), 404);
    assert_eq!(
        e.to_string(),
        "no workload named training-job-nope1-0.ssh.test"
    );
}

#[test]
fn admin_sets_and_extends_expiry() {
    let p = plane();
    let expiry = |at: Option<Option<u64>>, extend: Option<u64>| SetExpiry {
        session_expires_at: at,
        extend_secs: extend,
    };
    let now = 1_000;
    // No expiry yet: extend from now.
    let s = p.set_expiry(WAKE, expiry(None, Some(60)), now).unwrap();
    assert_eq!(s.session_expires_at, Some(1_060));
    // A future expiry is extended from itself.
    let s = p.set_expiry(WAKE, expiry(None, Some(60)), now).unwrap();
    assert_eq!(s.session_expires_at, Some(1_120));
    // A past one from now.
    p.set_expiry(WAKE, expiry(Some(Some(10)), None), now)
        .unwrap();
    let s = p.set_expiry(WAKE, expiry(None, Some(5)), now).unwrap();
    assert_eq!(s.session_expires_at, Some(1_005));
    let s = p.set_expiry(WAKE, expiry(Some(None), None), now).unwrap();
    assert_eq!(s.session_expires_at, None);
    let s = p
        .set_expiry(WAKE, expiry(None, Some(u64::MAX)), now)
        .unwrap();
    assert_eq!(s.session_expires_at, Some(u64::MAX));
    for bad in [expiry(None, None), expiry(Some(Some(1)), Some(1))] {
        assert_eq!(p.set_expiry(WAKE, bad, now), Err(ControlError::BadExpiry));
    }
    assert_eq!(
        p.set_expiry("nope", expiry(None, Some(1)), now)
            .unwrap_err()
            .status(),
        404
    );
}

#[test]
fn bodies_tell_null_from_missing() {
    let b: SetExpiry = parse_body(br#"{"session_expires_at": null}"#, "").unwrap();
    assert_eq!((b.session_expires_at, b.extend_secs), (Some(None), None));
    let b: SetExpiry = parse_body(br#"{"extend_secs": 5}"#, "").unwrap();
    assert_eq!((b.session_expires_at, b.extend_secs), (None, Some(5)));
    let b: SetState = parse_body(br#"{"state": "running", "message": null}"#, "").unwrap();
    assert_eq!(b.message, Some(None));
    assert!(parse_body::<SetState>(br#"{"state": "running", "x": 1}"#, "").is_err());
    assert!(parse_body::<SetExpiry>(br#"{"extend_secs": -1}"#, "").is_err());
    assert!(check_activate_body(b"").is_ok());
    assert!(check_activate_body(b" {} ").is_ok());
    assert!(check_activate_body(b"[]").is_err());
}

#[test]
fn control_routes_and_methods() {
    assert_eq!(side("/v1/edge/workloads/x"), Some(Side::Edge));
    assert_eq!(side("/v1/admin"), Some(Side::Admin));
    assert_eq!(side("/v1/edgey"), None);
    assert_eq!(side("/v1/training_jobs/search"), None);
    let host = || "h.ssh.test".to_string();
    assert_eq!(
        route("GET", "/v1/edge/workloads/h.ssh.test"),
        Ok(ControlRoute::EdgeStatus { host: host() })
    );
    assert_eq!(
        route("POST", "/v1/edge/workloads/h.ssh.test/activate"),
        Ok(ControlRoute::EdgeActivate { host: host() })
    );
    assert_eq!(
        route("GET", "/v1/admin/workloads/h.ssh.test"),
        Ok(ControlRoute::AdminStatus { host: host() })
    );
    assert_eq!(
        route("POST", "/v1/admin/workloads/h.ssh.test/state"),
        Ok(ControlRoute::AdminState { host: host() })
    );
    assert_eq!(
        route("POST", "/v1/admin/workloads/h.ssh.test/expiry"),
        Ok(ControlRoute::AdminExpiry { host: host() })
    );
    assert_eq!(
        route("POST", "/v1/edge/workloads/h").unwrap_err().status(),
        405
    );
    assert_eq!(
        route("GET", "/v1/edge/workloads/h/activate")
            .unwrap_err()
            .status(),
        405
    );
    for bad in [
        "/v1/edge",
        "/v1/edge/workloads/",
        "/v1/edge/workloads//activate",
        "/v1/admin/workloads/h/x",
    ] {
        assert_eq!(route("GET", bad).unwrap_err().status(), 404, "{bad}");
    }
}

#[test]
fn bearer_tokens() {
    assert_eq!(bearer_from_header(Some(b"Bearer t0k")), Ok("t0k"));
    assert_eq!(bearer_from_header(Some(b"bearer  t0k ")), Ok("t0k"));
    for bad in [
        None,
        Some(&b"Api-Key t0k"[..]),
        Some(b"Bearer "),
        Some(b"t0k"),
    ] {
        assert_eq!(bearer_from_header(bad), Err(ControlError::MissingBearer));
    }
    let digest = super::api::digest_api_key("edge-token");
    assert_eq!(check_bearer(&digest, "edge-token"), Ok(()));
    assert_eq!(
        check_bearer(&digest, "edge-tokeN"),
        Err(ControlError::BadBearer)
    );
    let p = plane();
    assert_eq!(p.token_sha256(Side::Edge), Ok(&digest));
    let off = p.token_sha256(Side::Admin).unwrap_err();
    assert_eq!(off.status(), 404);
    assert_eq!(
        off.to_string(),
        "control plane not enabled: set control_plane.admin_token_sha256"
    );
}
