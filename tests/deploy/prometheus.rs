//! deploy/prometheus (alert rules, their unit tests, the example scrape config) and
//! deploy/grafana (the dashboard): promtool accepts them, and they hold together.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::promql::selectors;
use crate::support::{deploy, promtool, read, readme_anchors, run_ok, yaml_doc};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Every alerting rule of alerts.yml: (group, rule).
pub fn alert_rules() -> Vec<(String, Value)> {
    let doc = yaml_doc(&deploy("prometheus/alerts.yml"));
    let mut rules = Vec::new();
    for group in doc["groups"].as_array().expect("alerts.yml: groups") {
        let name = group["name"].as_str().unwrap_or_default().to_string();
        for rule in group["rules"].as_array().expect("alerts.yml: rules") {
            rules.push((name.clone(), rule.clone()));
        }
    }
    rules
}

/// The PromQL expressions of alerts.yml.
pub fn alert_exprs() -> Vec<String> {
    alert_rules()
        .iter()
        .map(|(_, r)| r["expr"].as_str().expect("rule expr").to_string())
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy("grafana/ssh-edge.json"))).expect("dashboard JSON")
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("dashboard panels") {
        out.push(p.clone());
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter().cloned());
        }
    }
    out
}

/// The PromQL of every panel target and of every query variable (`label_values(expr, l)`
/// contributes `expr`), with dashboard variables left in.
pub fn dashboard_exprs() -> Vec<String> {
    let d = dashboard();
    let mut exprs: Vec<String> = panels(&d)
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("target expr").to_string())
        .collect();
    for var in d["templating"]["list"].as_array().expect("templating") {
        if var["type"] == "query" {
            let q = var["query"]["query"]
                .as_str()
                .or(var["query"].as_str())
                .expect("query variable text");
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.rsplit_once(','))
                .map_or(q, |(e, _)| e);
            exprs.push(inner.to_string());
        }
    }
    exprs
}

/// Dashboard variables replaced by concrete values, so promtool can parse the query.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$job", "ssh-edge")
        .replace("$instance", ".*")
}

#[test]
fn alert_rules_pass_promtool_check_and_their_unit_tests() {
    let out = run_ok(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(deploy("prometheus/alerts.yml")),
        TIMEOUT,
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let out = run_ok(
        Command::new(promtool())
            .args(["test", "rules"])
            .arg(deploy("prometheus/alerts_test.yml")),
        TIMEOUT,
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_is_labelled_annotated_and_tested_firing_and_quiet() {
    let rules = alert_rules();
    let expected = [
        "SshEdgeDown",
        "SshEdgeAuthFailureSpike",
        "SshEdgeBackendFailures",
        "SshEdgePreauthDrops",
        "SshEdgeReloadFailed",
        "SshEdgeDnsErrors",
        "SshEdgePreauthNearFull",
        "SshEdgeControlPlaneUnavailable",
        "SshEdgeActivationsFailing",
        "SshEdgeControlPlaneSlow",
    ];
    let names: BTreeSet<&str> = rules
        .iter()
        .filter_map(|(_, r)| r["alert"].as_str())
        .collect();
    for name in expected {
        assert!(names.contains(name), "alerts.yml lacks {name}");
    }
    let anchors = readme_anchors();
    for (group, rule) in &rules {
        let name = rule["alert"].as_str().expect("only alerting rules");
        assert_eq!(group, "ssh-edge", "{name} is outside group ssh-edge");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{name}: severity label {severity:?}"
        );
        for key in ["summary", "description", "runbook"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key} annotation"
            );
        }
        let runbook = rule["annotations"]["runbook"].as_str().unwrap_or_default();
        let anchor = runbook
            .strip_prefix("README.md#")
            .unwrap_or_else(|| panic!("{name}: runbook {runbook:?} is not README.md#<section>"));
        assert!(
            anchors.contains(anchor),
            "{name}: README has no section #{anchor}"
        );
    }

    // alerts_test.yml: per alert, a case where it fires and one where it stays quiet.
    let tests = yaml_doc(&deploy("prometheus/alerts_test.yml"));
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for test in tests["tests"].as_array().expect("alerts_test.yml: tests") {
        for case in test["alert_rule_test"].as_array().into_iter().flatten() {
            let name = case["alertname"].as_str().unwrap_or_default().to_string();
            let fired = case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty());
            let entry = cases.entry(name).or_default();
            if fired {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
    for name in &names {
        let (fires, quiet) = cases.get(*name).copied().unwrap_or_default();
        assert!(fires > 0, "alerts_test.yml: no case where {name} fires");
        assert!(
            quiet > 0,
            "alerts_test.yml: no case where {name} stays quiet"
        );
    }
}

#[test]
fn alerts_use_only_edge_metrics_and_up_for_the_scrape_job_of_the_example_config() {
    let config = yaml_doc(&deploy("prometheus/prometheus.yml"));
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_array()
        .expect("scrape_configs")
        .iter()
        .filter_map(|s| s["job_name"].as_str())
        .collect();
    assert_eq!(jobs, ["ssh-edge"], "prometheus.yml scrape jobs");
    for expr in alert_exprs() {
        for sel in selectors(&expr) {
            assert!(
                sel.metric.starts_with("ssh_edge_") || sel.metric == "up",
                "alert uses {} (only ssh_edge_* and up): {expr}",
                sel.metric
            );
            let job = sel.matchers.iter().find(|(l, _, _)| l == "job");
            assert_eq!(
                job.map(|(_, op, v)| (op.as_str(), v.as_str())),
                Some(("=", "ssh-edge")),
                "{} in an alert should select job=\"ssh-edge\": {expr}",
                sel.metric
            );
        }
    }
}

#[test]
fn example_prometheus_config_passes_promtool() {
    // promtool checks that the rule files and the credentials file exist: give it a copy
    // beside alerts.yml with a token file that does.
    let tmp = tempfile::tempdir().unwrap();
    let token = tmp.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").unwrap();
    let original = read(&deploy("prometheus/prometheus.yml"));
    let credentials = "/etc/prometheus/secrets/ssh-edge-admin-token";
    assert!(original.contains(credentials), "credentials_file moved");
    std::fs::write(
        tmp.path().join("prometheus.yml"),
        original.replace(credentials, &token.display().to_string()),
    )
    .unwrap();
    std::fs::copy(
        deploy("prometheus/alerts.yml"),
        tmp.path().join("alerts.yml"),
    )
    .unwrap();
    let out = run_ok(
        Command::new(promtool())
            .args(["check", "config"])
            .arg(tmp.path().join("prometheus.yml")),
        TIMEOUT,
    );
    assert!(out.contains("SUCCESS: 10 rules found"), "{out}");
}

#[test]
fn dashboard_is_well_formed_and_its_queries_parse() {
    let d = dashboard();
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert_eq!(d["uid"], "ssh-edge");
    let vars = d["templating"]["list"].as_array().expect("templating");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "DS_PROMETHEUS")
        .expect("a DS_PROMETHEUS variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});

    let mut ids = BTreeSet::new();
    for p in panels(&d) {
        let title = p["title"].as_str().unwrap_or_default().to_string();
        assert!(!title.is_empty(), "a panel without title: {p}");
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id: {title}"
        );
        for key in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"], datasource, "{title}: panel datasource");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{title}: target datasource");
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
        }
    }
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], datasource, "variable {}", v["name"]);
    }

    // The panels asked for, by the metric they show.
    let used: BTreeSet<String> = dashboard_exprs()
        .iter()
        .flat_map(|e| selectors(e))
        .map(|s| s.metric)
        .collect();
    for metric in [
        "ssh_edge_connections_total",
        "ssh_edge_logins_total",
        "ssh_edge_sessions_active",
        "ssh_edge_unauthenticated_connections",
        "ssh_edge_bridge_bytes_total",
        "ssh_edge_splice_bytes_total",
        "ssh_edge_backend_connect_seconds_bucket",
        "ssh_edge_connections_rejected_total",
        "ssh_edge_auth_failures_total",
        "ssh_edge_backend_failures_total",
        "ssh_edge_dns_lookups_total",
        "ssh_edge_dns_lookup_seconds_bucket",
        "ssh_edge_config_reloads_total",
        "ssh_edge_channels_active",
        "ssh_edge_channels_total",
    ] {
        assert!(used.contains(metric), "no dashboard panel shows {metric}");
    }
    for metric in &used {
        assert!(
            metric.starts_with("ssh_edge_") || metric == "up",
            "dashboard uses {metric} (only ssh_edge_* and up)"
        );
    }

    // Every query parses: promtool checks them as recording rules.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in dashboard_exprs().iter().enumerate() {
        rules += &format!(
            "      - record: dashboard:query_{i}\n        expr: {}\n",
            serde_json::to_string(&concrete(e)).unwrap()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("dashboard_rules.yml");
    std::fs::write(&file, rules).unwrap();
    let out = run_ok(
        Command::new(promtool()).args(["check", "rules"]).arg(&file),
        TIMEOUT,
    );
    assert!(out.contains("SUCCESS"), "{out}");
}
