//! Host parsing, messages and the activation config fields.

use super::api::Workload;
use super::config::{
    RawControlPlane, RawIssuerConfig, RawModel, RawTenant, RawTrainingJob, validate,
};
use super::workload::*;

pub(super) const SUFFIX: &str = "ssh.test";

pub(super) fn job(id: &str) -> WorkloadId {
    WorkloadId::TrainingJob { job_id: id.into() }
}

pub(super) fn model(m: &str, d: &str) -> WorkloadId {
    WorkloadId::Model {
        model_id: m.into(),
        deployment_id: d.into(),
    }
}

pub(super) fn key(tenant: &str, id: WorkloadId) -> WorkloadKey {
    WorkloadKey {
        tenant: tenant.into(),
        id,
    }
}

#[test]
fn hosts_parse_as_the_inverse_of_workload_host() {
    let cases = [
        (
            Workload::TrainingJob {
                project_id: "p".into(),
                job_id: "abc1234".into(),
                node: "12".into(),
            },
            job("abc1234"),
        ),
        (
            Workload::Model {
                model_id: "m1x2y3".into(),
                deployment_id: "d1".into(),
                replica: Some("3".into()),
            },
            model("m1x2y3", "d1"),
        ),
        (
            Workload::Model {
                model_id: "m1x2y3".into(),
                deployment_id: "d1".into(),
                replica: None,
            },
            model("m1x2y3", "d1"),
        ),
    ];
    for (workload, id) in cases {
        for tenant in ["default", "tenant-b"] {
            let host = workload.host(tenant, SUFFIX);
            assert_eq!(
                parse_host(&host, SUFFIX),
                Some(key(tenant, id.clone())),
                "{host}"
            );
            assert_eq!(WorkloadId::from(&workload), id);
        }
    }
    // Case and one trailing dot are ignored, as at the edge.
    assert_eq!(
        parse_host("Training-Job-ABC1-0.SSH.test.", SUFFIX),
        Some(key("default", job("abc1")))
    );
}

#[test]
fn hosts_that_do_not_fit_are_refused() {
    for bad in [
        "",
        "ssh.test",
        ".ssh.test",
        "training-job-abc1-0.other.example",
        "training-job-abc1-0.ssh.test..",
        "training-job-abc1-0xssh.test",
        "training-job-abc1.ssh.test",
        "training-job-abc1-.ssh.test",
        "training-job-abc1-x.ssh.test",
        "training-job-abc1-1234567890.ssh.test",
        "training-job-ab-c1-0.ssh.test",
        "training-job-abc1-0.default.ssh.test",
        "training-job-abc1-0.a.b.ssh.test",
        "training-job-abc1-0.-b.ssh.test",
        "model-m1.ssh.test",
        "model-m1-d1-1-2.ssh.test",
        "model-m1-d1-x.ssh.test",
        "model-m1--1.ssh.test",
        "models-m1-d1.ssh.test",
        "job-abc1-0.ssh.test",
        "training-job-abc1-0/../x.ssh.test",
    ] {
        assert_eq!(parse_host(bad, SUFFIX), None, "{bad:?}");
    }
    let long = format!("training-job-{}-0.ssh.test", "a".repeat(64));
    assert_eq!(parse_host(&long, SUFFIX), None);
}

#[test]
fn messages_say_what_happens_next() {
    let j = job("abc1");
    let m = model("m1", "d1");
    assert_eq!(
        message(&j, Trigger::OnDemand, State::Running, Some("x"), None),
        None
    );
    assert_eq!(
        message(&j, Trigger::OnFailure, State::Stopped, None, None).as_deref(),
        Some(
            "training job abc1: the SSH session opens only if training fails (trigger on_failure)"
        )
    );
    assert_eq!(
        message(&m, Trigger::OnFailure, State::Stopped, None, None).as_deref(),
        Some(
            "model m1 deployment d1: the SSH session opens only if the deployment fails (trigger on_failure)"
        )
    );
    assert_eq!(
        message(&j, Trigger::OnStartup, State::Stopped, None, None).as_deref(),
        Some("training job abc1 has stopped")
    );
    assert_eq!(
        message(
            &m,
            Trigger::OnDemand,
            State::Stopped,
            Some("back at 5pm"),
            None
        )
        .as_deref(),
        Some("back at 5pm")
    );
    assert_eq!(
        message(&m, Trigger::OnDemand, State::Activatable, None, None).as_deref(),
        Some("model m1 deployment d1 is asleep (on-demand session); connecting wakes it")
    );
    assert_eq!(
        message(
            &j,
            Trigger::OnDemand,
            State::Activatable,
            None,
            Some("exit status 1")
        )
        .as_deref(),
        Some(
            "training job abc1 is asleep (on-demand session); connecting wakes it (last activation failed: exit status 1)"
        )
    );
    assert_eq!(
        message(&j, Trigger::OnDemand, State::Starting, None, None).as_deref(),
        Some("training job abc1 is starting")
    );
}

#[test]
fn config_fields_are_validated_with_every_problem_listed() {
    let raw = RawIssuerConfig {
        control_plane: RawControlPlane {
            edge_token_sha256: Some("zz".into()),
            admin_token_sha256: Some("00".repeat(31)),
        },
        tenants: vec![RawTenant {
            name: "default".into(),
            training_jobs: vec![RawTrainingJob {
                job_id: "j1".into(),
                project_id: "p1".into(),
                trigger: Some("sometimes".into()),
                state: Some("asleep".into()),
                message: Some("line\nbreak".into()),
                on_activate: Some(" ".into()),
                ..RawTrainingJob::default()
            }],
            models: vec![RawModel {
                model_id: "m1".into(),
                deployments: vec!["d1".into()],
                message: Some(String::new()),
                ..RawModel::default()
            }],
            ..RawTenant::default()
        }],
        ..RawIssuerConfig::default()
    };
    let Err(err) = validate(&raw) else {
        panic!("invalid config accepted")
    };
    let text = err.to_string();
    for needle in [
        "control_plane.edge_token_sha256: expected 64 hex digits",
        "control_plane.admin_token_sha256: expected 64 hex digits",
        "training_jobs[0].trigger: \"sometimes\" is not one of on_startup, on_demand, on_failure",
        "training_jobs[0].state: \"asleep\" is not one of running, activatable, starting, stopped",
        "training_jobs[0].message: contains control characters",
        "training_jobs[0].on_activate: empty",
        "models[0].message: empty",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    let same = "ab".repeat(32);
    let raw = RawIssuerConfig {
        control_plane: RawControlPlane {
            edge_token_sha256: Some(same.clone()),
            admin_token_sha256: Some(same),
        },
        ..RawIssuerConfig::default()
    };
    let Err(err) = validate(&raw) else {
        panic!("invalid config accepted")
    };
    assert!(
        err.to_string().contains("equals edge_token_sha256"),
        "{err}"
    );
}

#[test]
fn spec_defaults_follow_the_trigger() {
    let mut problems = Vec::new();
    let raw = |trigger, state| RawSpec {
        trigger,
        state,
        ..RawSpec::default()
    };
    let cases = [
        (None, None, Trigger::OnStartup, State::Running),
        (
            Some("on_demand"),
            None,
            Trigger::OnDemand,
            State::Activatable,
        ),
        (Some("on_failure"), None, Trigger::OnFailure, State::Stopped),
        (
            Some("on_demand"),
            Some("running"),
            Trigger::OnDemand,
            State::Running,
        ),
    ];
    for (t, s, trigger, state) in cases {
        let spec = validate_spec("x", raw(t, s), &mut problems);
        assert_eq!((spec.trigger, spec.state), (trigger, state));
    }
    assert!(problems.is_empty(), "{problems:?}");
}
