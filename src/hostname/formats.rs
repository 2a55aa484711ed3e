//! The facts about workload host names that the edge, the issuer and the helper share: the
//! default suffix and kinds (their templates), the default remote, DNS length limits, and the
//! labels the issuer builds. Everything else reads them from here.

use super::KindSpec;

/// Longest host name, in bytes (DNS).
pub const MAX_NAME: usize = 253;
/// Longest label, in bytes (DNS).
pub const MAX_LABEL: usize = 63;
/// Most digits of a `{name:num}` field (0 to 999 999 999, fits in a `u32`): node and replica
/// indexes are small, and a bound keeps absurd values (`-99999999999999999999`) out of backend
/// names and logs. The issuer's API takes indexes of the same length.
pub const MAX_NUM_DIGITS: usize = 9;
/// What [`super::Target::remote_name`] says for host names without a remote label; the
/// issuer's tenant of the same name signs such hosts.
pub const DEFAULT_REMOTE: &str = "default";
/// The host-name suffix when none is configured.
pub const DEFAULT_SUFFIX: &str = "ssh.baseten.co";

/// Training-job nodes: `training-job-<job_id>-<node>`.
pub const TRAINING_JOB_KIND: &str = "training-job";
/// The literal every training-job label starts with.
pub const TRAINING_JOB_PREFIX: &str = "training-job-";
pub const TRAINING_JOB_TEMPLATE: &str = "training-job-{job_id:slug}-{node:num}";
/// Model replicas: `model-<model_id>-<deployment_id>[-<replica_id>]`.
pub const MODEL_KIND: &str = "model";
/// The literal every model label starts with.
pub const MODEL_PREFIX: &str = "model-";
pub const MODEL_TEMPLATE: &str = "model-{model_id}-{deployment_id}[-{replica_id:num}]";

/// The kinds the edge knows when none are configured, and the ones the issuer signs.
#[must_use]
pub fn default_kinds() -> Vec<KindSpec> {
    vec![
        KindSpec {
            name: TRAINING_JOB_KIND.into(),
            template: TRAINING_JOB_TEMPLATE.into(),
        },
        KindSpec {
            name: MODEL_KIND.into(),
            template: MODEL_TEMPLATE.into(),
        },
    ]
}

/// The workload label of a training-job node (matches [`TRAINING_JOB_TEMPLATE`]).
#[must_use]
pub fn training_job_label(job_id: &str, node: &str) -> String {
    format!("{TRAINING_JOB_PREFIX}{job_id}-{node}")
}

/// The workload label of a model deployment or one replica (matches [`MODEL_TEMPLATE`]).
#[must_use]
pub fn model_label(model_id: &str, deployment_id: &str, replica: Option<&str>) -> String {
    match replica {
        Some(r) => format!("{MODEL_PREFIX}{model_id}-{deployment_id}-{r}"),
        None => format!("{MODEL_PREFIX}{model_id}-{deployment_id}"),
    }
}

/// `<label>[.<remote>].<suffix>`: no remote label for [`DEFAULT_REMOTE`].
#[must_use]
pub fn full_host(label: &str, remote: &str, suffix: &str) -> String {
    if remote == DEFAULT_REMOTE {
        format!("{label}.{suffix}")
    } else {
        format!("{label}.{remote}.{suffix}")
    }
}

/// True if `host` fits DNS lengths: labels of 1 to [`MAX_LABEL`] bytes, [`MAX_NAME`] in all.
#[must_use]
pub fn fits_dns(host: &str) -> bool {
    host.len() <= MAX_NAME && host.split('.').all(|l| (1..=MAX_LABEL).contains(&l.len()))
}

/// A DNS label of `a-z0-9-`, 1 to [`MAX_LABEL`] bytes, not starting or ending with `-`.
#[must_use]
pub fn is_dns_label(s: &str) -> bool {
    !s.contains('.') && super::check_dns(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::HostGrammar;
    use super::*;

    /// The labels the issuer builds are the ones the edge parses, field for field.
    #[test]
    fn built_labels_parse_back() {
        let grammar =
            HostGrammar::new(DEFAULT_SUFFIX, &default_kinds(), &["tenant-b".to_string()]).unwrap();
        let job = full_host(
            &training_job_label("abc1234", "3"),
            "tenant-b",
            DEFAULT_SUFFIX,
        );
        let t = grammar.parse_host(&job).unwrap();
        assert_eq!(t.kind, TRAINING_JOB_KIND);
        assert_eq!(t.remote.as_deref(), Some("tenant-b"));
        assert_eq!(
            (t.field("job_id"), t.field("node")),
            (Some("abc1234"), Some("3"))
        );
        for replica in [None, Some("7")] {
            let host = full_host(
                &model_label("m1", "d2", replica),
                DEFAULT_REMOTE,
                DEFAULT_SUFFIX,
            );
            assert!(!host.contains(DEFAULT_REMOTE), "{host}");
            let t = grammar.parse_host(&host).unwrap();
            assert_eq!(t.kind, MODEL_KIND);
            assert_eq!(t.remote_name(), DEFAULT_REMOTE);
            assert_eq!(t.field("model_id"), Some("m1"));
            assert_eq!(t.field("deployment_id"), Some("d2"));
            assert_eq!(t.field("replica_id"), replica);
        }
        for kind in default_kinds() {
            let prefix = [TRAINING_JOB_PREFIX, MODEL_PREFIX]
                .into_iter()
                .find(|p| p.strip_suffix('-') == Some(kind.name.as_str()));
            assert!(
                prefix.is_some_and(|p| kind.template.starts_with(p)),
                "{kind:?}"
            );
        }
    }

    #[test]
    fn dns_limits() {
        let label = "a".repeat(MAX_LABEL);
        assert!(fits_dns(&format!("{label}.b")));
        assert!(!fits_dns(&format!("{label}a.b")));
        assert!(!fits_dns("a..b"));
        let long = vec!["a".repeat(50); 5].join(".");
        assert_eq!(long.len(), 254);
        assert!(!fits_dns(&long));
        assert!(is_dns_label("tenant-b") && is_dns_label(&label));
        for bad in ["", "-a", "a-", "A", "a.b", &format!("{label}a")] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }
}
