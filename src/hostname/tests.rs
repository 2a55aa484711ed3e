//! Tests for [`super`] (kept apart to keep the parser file short).

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn spec(name: &str, template: &str) -> KindSpec {
    KindSpec {
        name: name.into(),
        template: template.into(),
    }
}

fn kinds() -> Vec<KindSpec> {
    vec![
        spec("training-job", "training-job-{job_id:slug}-{node:num}"),
        spec(
            "model",
            "model-{model_id}-{deployment_id}[-{replica_id:num}]",
        ),
    ]
}

fn grammar() -> HostGrammar {
    HostGrammar::new("ssh.baseten.co", &kinds(), &["tenant-b".to_string()]).unwrap()
}

/// The defaults plus a kind that exists only as data.
fn grammar3() -> HostGrammar {
    let mut k = kinds();
    k.push(spec("notebook", "nb-{owner:slug}-{n:num}[-gpu{gpus:num}]"));
    HostGrammar::new("ssh.baseten.co", &k, &["tenant-b".to_string()]).unwrap()
}

fn pairs(t: &Target) -> Vec<(&str, &str)> {
    t.fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

#[test]
fn parses_training_job() {
    let t = grammar()
        .parse_host("training-job-abc1234-0.ssh.baseten.co")
        .unwrap();
    assert_eq!(t.host, "training-job-abc1234-0.ssh.baseten.co");
    assert_eq!(
        (t.kind.as_str(), t.remote.as_deref()),
        ("training-job", None)
    );
    assert_eq!(pairs(&t), [("job_id", "abc1234"), ("node", "0")]);
    assert_eq!(
        (t.remote_name(), t.workload()),
        ("default", "training-job-abc1234-0")
    );
}

#[test]
fn job_id_takes_everything_before_the_last_dash() {
    let t = grammar()
        .parse_user_target("training-job-my-job-7-12")
        .unwrap();
    assert_eq!(pairs(&t), [("job_id", "my-job-7"), ("node", "12")]);
}

#[test]
fn model_with_and_without_replica() {
    let g = grammar();
    let t = g
        .parse_host("model-m1x2-d9z8-3.tenant-b.ssh.baseten.co")
        .unwrap();
    assert_eq!(
        pairs(&t),
        [
            ("model_id", "m1x2"),
            ("deployment_id", "d9z8"),
            ("replica_id", "3")
        ]
    );
    assert_eq!(
        (t.remote.as_deref(), t.remote_name()),
        (Some("tenant-b"), "tenant-b")
    );
    assert_eq!(t.host, "model-m1x2-d9z8-3.tenant-b.ssh.baseten.co");
    let t = g.parse_host("model-m1x2-d9z8.ssh.baseten.co").unwrap();
    assert_eq!(pairs(&t), [("model_id", "m1x2"), ("deployment_id", "d9z8")]);
    assert_eq!(t.field("replica_id"), None);
}

#[test]
fn case_insensitive_with_optional_trailing_dot() {
    let t = grammar()
        .parse_host("Training-Job-ABC-1.SSH.Baseten.CO.")
        .unwrap();
    assert_eq!(t.host, "training-job-abc-1.ssh.baseten.co");
    assert_eq!(t.field("job_id"), Some("abc"));
    let g = HostGrammar::new("SSH.Baseten.co.", &kinds(), &[]).unwrap();
    assert_eq!(g.suffix(), "ssh.baseten.co");
    assert!(g.parse_host("model-a-b.ssh.baseten.co").is_ok());
}

#[test]
fn user_target_forms() {
    let g = grammar();
    let plain = "training-job-abc1234-0.ssh.baseten.co";
    let remote = "training-job-abc1234-0.tenant-b.ssh.baseten.co";
    for (user, host) in [
        ("training-job-abc1234-0", plain),
        ("training-job-abc1234-0.", plain),
        ("training-job-abc1234-0.tenant-b", remote),
        (plain, plain),
        ("TRAINING-JOB-abc1234-0.Tenant-B.ssh.baseten.co.", remote),
    ] {
        let t = g.parse_user_target(user).unwrap();
        assert_eq!(t.host, host, "{user}");
        assert_eq!(t, g.parse_host(host).unwrap());
    }
    let e = g.parse_user_target("a.b.c").unwrap_err();
    assert!(
        matches!(e, HostError::TooManyLabels { labels: 3, .. }),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("expected <workload>[.<remote>] or <workload>[.<remote>].ssh.baseten.co"),
        "{e}"
    );
    // Without the suffix the name is shorter than the rebuilt host: still capped at 253.
    let suffix = ["s".repeat(60), "t".repeat(60), "u".repeat(60)].join(".");
    let g = HostGrammar::new(&suffix, &kinds(), &["r".repeat(63)]).unwrap();
    let user = format!("training-job-{}-0.{}", "j".repeat(48), "r".repeat(63));
    assert!(matches!(
        g.parse_user_target(&user),
        Err(HostError::TooLong { len: 310, .. })
    ));
}

#[test]
fn kinds_are_data() {
    let g = grammar3();
    let t = g
        .parse_host("nb-alice-smith-2-gpu4.ssh.baseten.co")
        .unwrap();
    assert_eq!(t.kind, "notebook");
    assert_eq!(
        pairs(&t),
        [("owner", "alice-smith"), ("n", "2"), ("gpus", "4")]
    );
    let t = g.parse_user_target("nb-alice-2").unwrap();
    assert_eq!(pairs(&t), [("owner", "alice"), ("n", "2")]);
    assert_eq!(
        g.expected(),
        "training-job-<job_id>-<node>, model-<model_id>-<deployment_id>[-<replica_id>] or nb-<owner>-<n>[-gpu<gpus>]"
    );
    assert_eq!(g.kind_fields("notebook"), Some(vec!["owner", "n", "gpus"]));
    assert_eq!(g.kind_fields("nope"), None);
}

#[test]
fn first_full_match_wins_and_errors_name_the_longest_prefix() {
    let k = [
        spec("short", "train-{a:slug}"),
        spec("long", "train-big-{b:num}"),
        spec("other", "x-{c}"),
    ];
    let g = HostGrammar::new("example.com", &k, &[]).unwrap();
    assert_eq!(
        g.parse_host("train-big-1.example.com").unwrap().kind,
        "short"
    );
    let k = [
        spec("short", "train-{a}"),
        spec("long", "train-big-{b:num}"),
    ];
    let g = HostGrammar::new("example.com", &k, &[]).unwrap();
    assert_eq!(
        g.parse_host("train-big-1.example.com").unwrap().kind,
        "long"
    );
    let e = g.parse_host("train-big-x.example.com").unwrap_err();
    assert!(
        matches!(&e, HostError::Malformed { kind, .. } if kind == "long"),
        "{e:?}"
    );
    assert!(e.to_string().ends_with("expected train-big-<b>"), "{e}");
}

#[test]
fn error_messages_name_input_and_expectation() {
    let g = grammar();
    let long_label = format!("{}.ssh.baseten.co", "a".repeat(64));
    let long_name = format!("{}.ssh.baseten.co", vec!["a".repeat(63); 4].join("."));
    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "foo.ssh.baseten.co",
            "unknown_kind",
            "invalid host \"foo.ssh.baseten.co\": unknown workload kind; expected training-job-<job_id>-<node> or model-<model_id>-<deployment_id>[-<replica_id>]",
        ),
        (
            "training-job-abc.ssh.baseten.co",
            "malformed",
            "invalid host \"training-job-abc.ssh.baseten.co\": expected training-job-<job_id>-<node>",
        ),
        (
            "model-a.ssh.baseten.co",
            "malformed",
            "expected model-<model_id>-<deployment_id>[-<replica_id>]",
        ),
        (
            "training-job-a-0.example.com",
            "wrong_suffix",
            "invalid host \"training-job-a-0.example.com\": expected a name ending in .ssh.baseten.co",
        ),
        (
            "training-job-a-0.xssh.baseten.co",
            "wrong_suffix",
            "ending in .ssh.baseten.co",
        ),
        (
            "training-job-a-0.nope.ssh.baseten.co",
            "unknown_remote",
            "invalid host \"training-job-a-0.nope.ssh.baseten.co\": unknown remote \"nope\"; known remotes: tenant-b",
        ),
        (
            "",
            "empty",
            "invalid host \"\": empty name; expected <workload>[.<remote>].ssh.baseten.co",
        ),
        (".", "empty", "empty name"),
        ("a..ssh.baseten.co", "empty_label", "empty label"),
        (
            ".ssh.baseten.co",
            "empty_label",
            "expected <workload>[.<remote>].ssh.baseten.co",
        ),
        ("a.ssh.baseten.co..", "empty_label", "empty label"),
        (
            &long_label,
            "label_too_long",
            "is 64 bytes, over the 63-byte limit",
        ),
        (&long_name, "too_long", "270 bytes, over the 253-byte limit"),
        (
            "a_b.ssh.baseten.co",
            "bad_character",
            "bad character '_' in label \"a_b\"; labels use a-z, 0-9 and '-'",
        ),
        (
            "caf\u{e9}.ssh.baseten.co",
            "bad_character",
            "bad character '\\u{e9}' in label \"caf\\u{e9}\"",
        ),
        (
            "-ab.ssh.baseten.co",
            "hyphen_at_edge",
            "label \"-ab\" starts or ends with '-'",
        ),
        (
            "a.b.c.ssh.baseten.co",
            "too_many_labels",
            "too many labels; expected <workload>[.<remote>].ssh.baseten.co",
        ),
        (
            "ssh.baseten.co",
            "missing_workload",
            "no workload label; expected <workload>[.<remote>].ssh.baseten.co",
        ),
    ];
    for (host, reason, want) in cases {
        let e = g.parse_host(host).unwrap_err();
        assert_eq!(e.reason(), reason, "{host}: {e}");
        assert!(e.to_string().contains(want), "{host}: {e}");
    }
    let none = HostGrammar::new("ssh.baseten.co", &kinds(), &[]).unwrap();
    let e = none
        .parse_host("model-a-b.tenant-b.ssh.baseten.co")
        .unwrap_err();
    assert!(
        e.to_string()
            .ends_with("unknown remote \"tenant-b\"; known remotes: none configured"),
        "{e}"
    );
}

#[test]
fn network_input_is_escaped_and_truncated() {
    let g = grammar();
    for host in [
        format!("\u{1b}[31mevil\n\u{202e}{}", "x".repeat(300)),
        format!("\"\u{0}{}", "y".repeat(150)),
    ] {
        let msg = g.parse_user_target(&host).unwrap_err().to_string();
        assert!(
            msg.chars().all(|c| c.is_ascii_graphic() || c == ' '),
            "{msg:?}"
        );
        assert!(msg.contains("...") && msg.len() < 600, "{msg}");
    }
    let msg = g
        .parse_host("\u{1b}[31m.ssh.baseten.co")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("invalid host \"\\u{1b}[31m.ssh.baseten.co\": bad character '\\u{1b}'"),
        "{msg}"
    );
}

#[test]
fn expand_substitutes_fields_and_builtins() {
    let g = grammar();
    let t = g
        .parse_host("training-job-my-job-7-12.tenant-b.ssh.baseten.co")
        .unwrap();
    let backend = t
        .expand("{job_id}-{node}.training.svc.cluster.local:2222")
        .unwrap();
    assert_eq!(backend, "my-job-7-12.training.svc.cluster.local:2222");
    assert_eq!(t.expand("{job_id}").unwrap(), "my-job-7");
    assert_eq!(
        t.expand("{kind}/{remote}/{workload}/{host}").unwrap(),
        "training-job/tenant-b/training-job-my-job-7-12/training-job-my-job-7-12.tenant-b.ssh.baseten.co"
    );
    assert_eq!(t.expand("").unwrap(), "");
    let e = t.expand("{nope}.svc").unwrap_err();
    assert!(matches!(&e, ExpandError::UnknownPlaceholder { name, .. } if name == "nope"));
    let msg = e.to_string();
    assert!(
        msg.contains("{nope}")
            && msg.contains("available: {job_id}, {node}, {kind}, {remote}, {host}, {workload}"),
        "{msg}"
    );
    let m = g.parse_host("model-a-b.ssh.baseten.co").unwrap();
    assert_eq!(m.expand("{remote}:{model_id}").unwrap(), "default:a");
    assert!(
        m.expand("{replica_id}")
            .unwrap_err()
            .to_string()
            .contains("{replica_id}")
    );
    assert!(matches!(
        t.expand("{job_id"),
        Err(ExpandError::Unclosed { .. })
    ));
    assert!(matches!(
        t.expand("{a{b}"),
        Err(ExpandError::Unclosed { .. })
    ));
    assert!(matches!(
        t.expand("a}b"),
        Err(ExpandError::StrayClose { .. })
    ));
    assert!(matches!(
        t.expand("{job_id}}"),
        Err(ExpandError::StrayClose { .. })
    ));
    assert_eq!(placeholders("{a}-x-{b}").unwrap(), ["a", "b"]);
}

#[test]
fn bad_templates_are_explained() {
    for (template, want) in [
        ("{a}-x", "must start with a literal prefix"),
        ("", "must start with a literal prefix"),
        ("[x-]{a}", "must start with a literal prefix"),
        ("x-{a", "unclosed '{' at byte 2"),
        ("x-{a:float}", "unknown field type \"float\""),
        ("x-{A}", "bad field name \"A\""),
        ("x-{}", "bad field name \"\""),
        ("x-{a}-{a:num}", "field \"a\" appears twice"),
        ("x-{a}[-{a}]", "field \"a\" appears twice"),
        ("x-[{a}][{b}]", "only one optional group"),
        ("x-[[{a}]]", "nested '['"),
        ("x-[{a}", "unclosed '['"),
        ("x-{a}]", "']' without '['"),
        ("x-[]", "empty optional group"),
        ("x-}", "'}' without '{'"),
        ("x.{a}", "character '.' is not allowed"),
        ("X-{a}", "character 'X' is not allowed"),
        ("x-{host}", "field name \"host\" is reserved"),
        ("x-{a}-", "must not start or end with '-'"),
        ("-x{a}", "must not start or end with '-'"),
    ] {
        let errors = HostGrammar::new("ssh.baseten.co", &[spec("k", template)], &[]).unwrap_err();
        assert!(
            matches!(errors.as_slice(), [GrammarError::BadTemplate { .. }]),
            "{template}: {errors:?}"
        );
        let msg = errors[0].to_string();
        assert!(
            msg.starts_with(&format!("kind \"k\": bad template {template:?}: ")),
            "{msg}"
        );
        assert!(msg.contains(want), "{template}: {msg}");
    }
}

#[test]
fn grammar_reports_every_problem_at_once() {
    let k = [
        spec("m", "m-{a}"),
        spec("m", "m-{b}"),
        spec("", "z-{c}"),
        spec("m", "m-{c}"),
        spec("n", "n-{x:y}"),
    ];
    let errors = HostGrammar::new(
        "bad_suffix..",
        &k,
        &["Tenant".into(), "a.b".into(), "ok".into()],
    )
    .unwrap_err();
    let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(errors.len(), 6, "{msgs:#?}");
    assert!(
        msgs[0].starts_with("bad suffix \"bad_suffix..\": bad character '_'"),
        "{msgs:#?}"
    );
    assert_eq!(errors[1], GrammarError::DuplicateKind { name: "m".into() });
    assert_eq!(errors[2], GrammarError::BadKindName { name: "".into() });
    assert!(matches!(&errors[3], GrammarError::BadTemplate { kind, .. } if kind == "n"));
    assert!(
        msgs[4].contains("\"Tenant\"") && msgs[4].contains("lowercase"),
        "{msgs:#?}"
    );
    assert_eq!(msgs[5], "bad remote name \"a.b\": must be a single label");
    assert_eq!(
        HostGrammar::new("ssh.baseten.co", &[], &[]).unwrap_err(),
        [GrammarError::NoKinds]
    );
    let e =
        HostGrammar::new(&format!("{}.co", "a".repeat(63)).repeat(4), &kinds(), &[]).unwrap_err();
    assert!(
        matches!(e.as_slice(), [GrammarError::BadSuffix { .. }]),
        "{e:?}"
    );
    // Overlapping prefixes are fine.
    assert!(HostGrammar::new("x.y", &[spec("a", "a-{v}"), spec("ab", "a-b{v}")], &[]).is_ok());
}

#[test]
fn numbers_have_at_most_nine_digits_and_the_refusal_names_the_field() {
    let g = grammar3();
    let t = g
        .parse_host("training-job-abc1234-999999999.ssh.baseten.co")
        .unwrap();
    assert_eq!(t.field("node"), Some("999999999"));
    for (host, field, digits, pattern) in [
        (
            "training-job-abc1234-1000000000.ssh.baseten.co",
            "node",
            10,
            "training-job-<job_id>-<node>",
        ),
        (
            "training-job-abc1234-99999999999999999999.ssh.baseten.co",
            "node",
            20,
            "training-job-<job_id>-<node>",
        ),
        // A number inside the optional group, too.
        (
            "nb-alice-1-gpu0000000008.ssh.baseten.co",
            "gpus",
            10,
            "nb-<owner>-<n>[-gpu<gpus>]",
        ),
    ] {
        let e = g.parse_host(host).unwrap_err();
        assert_eq!(e.reason(), "number_too_long", "{host}: {e}");
        assert_eq!(
            e,
            HostError::NumberTooLong {
                input: host.to_string(),
                field: field.into(),
                digits,
                pattern: pattern.into(),
            }
        );
        assert_eq!(
            e.to_string(),
            format!(
                "invalid host \"{host}\": <{field}> has {digits} digits, over the limit of 9 (0 to 999999999); expected {pattern}"
            )
        );
    }
    // Front C's user name form says the same.
    let e = g.parse_user_target("model-m1-d1-12345678901").unwrap_err();
    assert_eq!(e.reason(), "number_too_long", "{e}");
    // The default model kind's replica is a number too (as the issuer's API has it).
    assert_eq!(
        g.parse_host("model-m1-d1-x.ssh.baseten.co")
            .unwrap_err()
            .reason(),
        "malformed"
    );
    // Not a number problem: still "malformed".
    let e = g
        .parse_host("training-job-abc1234-x.ssh.baseten.co")
        .unwrap_err();
    assert_eq!(e.reason(), "malformed", "{e}");
}

#[test]
fn backtracking_is_bounded() {
    let fields: String = (0..12).map(|i| format!("-{{f{i}:slug}}")).collect();
    let g = HostGrammar::new("example.com", &[spec("p", &format!("p{fields}-end"))], &[]).unwrap();
    let started = Instant::now();
    let e = g
        .parse_host(&format!("p{}.example.com", "-a".repeat(31)))
        .unwrap_err();
    assert_eq!(e.reason(), "malformed");
    assert!(started.elapsed() < Duration::from_secs(5));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let s = String::from_utf8_lossy(&bytes);
        let g = grammar3();
        let _ = g.parse_host(&s);
        let _ = g.parse_user_target(&s);
    }

    #[test]
    fn near_valid_names_round_trip(
        s in prop_oneof![
            "(training-job-|model-|nb-|Model-)[a-z0-9]{1,6}(-[a-zA-Z0-9]{1,6}){0,2}(-[0-9]{1,3})?(-gpu[0-9])?(\\.tenant-b|\\.nope)?(\\.ssh\\.baseten\\.co|\\.SSH\\.baseten\\.CO)?\\.?",
            "(training-job-|model-|nb-)?[a-zA-Z0-9._-]{0,40}(\\.tenant-b)?(\\.ssh\\.baseten\\.co)?\\.?",
        ]
    ) {
        let g = grammar3();
        for parsed in [g.parse_host(&s), g.parse_user_target(&s)] {
            match parsed {
                Ok(t) => {
                    prop_assert!(t.host.ends_with(".ssh.baseten.co") && t.host == t.host.to_ascii_lowercase());
                    prop_assert_eq!(g.parse_host(&t.host), Ok(t.clone()));
                    prop_assert_eq!(g.parse_user_target(t.workload()).map(|u| u.kind), Ok(t.kind.clone()));
                }
                Err(e) => prop_assert!(e.to_string().starts_with("invalid host \"")),
            }
        }
    }

    #[test]
    fn every_prefix_of_a_valid_name_is_handled(
        job in "[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}",
        node in 0u32..1000,
        remote in any::<bool>(),
    ) {
        let g = grammar3();
        let host = format!("training-job-{job}-{node}{}.ssh.baseten.co.", if remote { ".tenant-b" } else { "" });
        let t = g.parse_host(&host).unwrap();
        prop_assert_eq!(t.field("job_id"), Some(job.as_str()));
        prop_assert_eq!(t.field("node").map(str::to_string), Some(node.to_string()));
        for i in 0..=host.len() {
            let _ = g.parse_host(&host[..i]);
            let _ = g.parse_user_target(&host[..i]);
        }
    }
}
