//! deploy/kubernetes: every manifest passes kubernetes-validate --strict, the kustomization
//! lists them, and they agree with each other, with the ConfigMap's edge.toml (which
//! `ssh-edge check-config` accepts with the files the pod mounts) and with the README.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use ssh_edge::lab::Lab;

use crate::support::{
    configmap_edge_toml, deploy, port_of, readme_section, run, run_ok, ssh_edge, text, tool,
    yaml_doc, yaml_docs,
};

/// The oldest Kubernetes the manifests are meant for, and kubernetes-validate's newest.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];

fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| !p.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// Every resource of the manifests, by kind.
fn resources() -> BTreeMap<String, Vec<Value>> {
    let mut by_kind: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for f in manifest_files() {
        for doc in yaml_docs(&f) {
            let kind = doc["kind"].as_str().expect("kind").to_string();
            by_kind.entry(kind).or_default().push(doc);
        }
    }
    by_kind
}

fn one<'a>(all: &'a BTreeMap<String, Vec<Value>>, kind: &str, name: &str) -> &'a Value {
    all.get(kind)
        .into_iter()
        .flatten()
        .find(|r| r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

#[test]
fn every_manifest_passes_kubernetes_validate_strict() {
    let validate = tool("kubernetes-validate", "kubernetes-validate (pip)");
    let files = manifest_files();
    assert!(files.len() >= 9, "{files:?}");
    for version in KUBERNETES_VERSIONS {
        let out = run_ok(
            Command::new(&validate)
                .args(["--strict", "--kubernetes-version", version])
                .args(&files),
            Duration::from_secs(180),
        );
        // A resource without a schema is only a warning to the tool: not here.
        for line in out.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains(" passed for resource "),
                "kubernetes {version}: {line}\n{out}"
            );
        }
        for f in &files {
            assert!(
                out.contains(&format!("{} passed", f.display())),
                "{} not validated against {version}:\n{out}",
                f.display()
            );
        }
    }
}

#[test]
fn the_kustomization_lists_every_manifest_but_the_example_secrets() {
    let k = yaml_doc(&deploy("kubernetes/kustomization.yaml"));
    assert_eq!(k["kind"], "Kustomization");
    assert_eq!(k["namespace"], "ssh-edge");
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let present: BTreeSet<String> = manifest_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| n != "secrets.example.yaml")
        .collect();
    assert_eq!(listed, present, "kustomization.yaml resources vs the files");
    // Applying the example Secrets would overwrite real keys with placeholders.
    for doc in yaml_docs(&deploy("kubernetes/secrets.example.yaml")) {
        assert_eq!(doc["kind"], "Secret");
        for (key, value) in doc["stringData"].as_object().expect("stringData") {
            assert!(
                value.as_str().is_some_and(|v| v.contains("REPLACE")),
                "secrets.example.yaml {key}: placeholders only"
            );
        }
    }
    for (kind, list) in resources() {
        for r in list {
            let name = &r["metadata"]["name"];
            if kind == "Namespace" {
                assert_eq!(name, "ssh-edge");
            } else {
                assert_eq!(r["metadata"]["namespace"], "ssh-edge", "{kind} {name}");
            }
        }
    }
}

#[test]
fn the_deployment_agrees_with_edge_toml_services_and_policies() {
    let all = resources();
    let edge: toml::Value = toml::from_str(&configmap_edge_toml()).expect("edge.toml parses");
    let listen = &edge["listen"];
    let d = one(&all, "Deployment", "ssh-edge");
    let pod = &d["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert!(d["spec"]["replicas"].as_u64().unwrap() >= 2, "replicas");
    assert!(matches(&d["spec"]["selector"]["matchLabels"], labels));
    let spec = &pod["spec"];
    let c = &spec["containers"][0];
    assert_eq!(spec["containers"].as_array().unwrap().len(), 1);

    // Ports: named container ports = edge.toml's listen ports.
    let ports: BTreeMap<String, u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    for (name, key) in [("tls", "tls"), ("ssh", "ssh"), ("admin", "admin")] {
        let addr = listen[key]
            .as_str()
            .unwrap_or_else(|| panic!("listen.{key}"));
        assert_eq!(
            ports.get(name).copied(),
            Some(u64::from(port_of(addr))),
            "port {name} vs listen.{key}"
        );
    }
    assert!(
        listen["admin"].as_str().unwrap().starts_with("0.0.0.0:"),
        "probes need admin on the pod IP"
    );
    assert!(
        edge["admin"]["bearer_token_file"].as_str().is_some(),
        "admin token"
    );
    assert_eq!(listen["proxy_protocol"].as_str(), Some("v2"));
    assert!(!listen["proxy_trusted_cidrs"].as_array().unwrap().is_empty());
    // ConfigMap and Secret updates reach the pod as file changes, without a signal.
    assert_eq!(
        edge["reload"]["watch"].as_bool(),
        Some(true),
        "[reload] watch"
    );

    // Probes on the admin port; the grace period covers preStop plus the drain.
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin");
    let pre_stop = c["lifecycle"]["preStop"]["exec"]["command"]
        .as_array()
        .expect("preStop exec");
    assert_eq!(pre_stop[0], "sleep");
    let sleep: u64 = pre_stop[1].as_str().unwrap().parse().unwrap();
    assert!((2..=15).contains(&sleep), "preStop sleep {sleep}");
    let drain = listen["drain_timeout_secs"].as_integer().map_or(
        ssh_edge::config::RawConfig::default()
            .listen
            .drain_timeout_secs,
        |d| d as u64,
    );
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > sleep + drain,
        "terminationGracePeriodSeconds {grace} <= preStop {sleep} + drain {drain}"
    );
    for key in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][key][r].is_string(), "resources.{key}.{r}");
        }
    }

    // Hardening, and the image's user.
    let psc = &spec["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 10001);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(
        sc["capabilities"]["add"],
        serde_json::json!(["NET_BIND_SERVICE"])
    );
    assert!(
        spec["topologySpreadConstraints"].is_array()
            || spec["affinity"]["podAntiAffinity"].is_object(),
        "replicas are not spread"
    );
    assert_eq!(spec["automountServiceAccountToken"], false);
    one(
        &all,
        "ServiceAccount",
        spec["serviceAccountName"].as_str().unwrap(),
    );

    // The config volume is mounted where the container's --config points.
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let config_path = args[args.iter().position(|a| *a == "--config").unwrap() + 1];
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .expect("config volume mount");
    assert_eq!(
        format!("{}/edge.toml", mount["mountPath"].as_str().unwrap()),
        config_path
    );
    for cm in volume_sources(spec)
        .iter()
        .filter_map(|s| s["configMap"]["name"].as_str())
    {
        one(&all, "ConfigMap", cm);
    }

    // Services: the LoadBalancer maps 443/22 onto the named ports; all select the pods.
    let lb = one(&all, "Service", "ssh-edge");
    assert_eq!(lb["spec"]["type"], "LoadBalancer");
    assert_eq!(lb["spec"]["externalTrafficPolicy"], "Local");
    let lb_ports: BTreeMap<u64, String> = lb["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["port"].as_u64().unwrap(),
                p["targetPort"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        lb_ports,
        BTreeMap::from([(22, "ssh".into()), (443, "tls".into())])
    );
    let headless = one(&all, "Service", "ssh-edge-replicas");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    for svc in &all["Service"] {
        assert!(
            matches(&svc["spec"]["selector"], labels),
            "Service {}",
            svc["metadata"]["name"]
        );
        for p in svc["spec"]["ports"].as_array().unwrap() {
            let target = p["targetPort"].as_str().expect("named targetPort");
            assert!(
                ports.contains_key(target),
                "Service {}: targetPort {target}",
                svc["metadata"]["name"]
            );
        }
    }

    // The PDB, the autoscaler and the network policy apply to these pods.
    let pdb = one(&all, "PodDisruptionBudget", "ssh-edge");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert!(matches(&pdb["spec"]["selector"]["matchLabels"], labels));
    let hpa = one(&all, "HorizontalPodAutoscaler", "ssh-edge");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "ssh-edge");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    let np = one(&all, "NetworkPolicy", "ssh-edge");
    assert!(matches(&np["spec"]["podSelector"]["matchLabels"], labels));
    let rule_ports = |rule: &Value| -> BTreeSet<u64> {
        rule["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_u64())
            .collect()
    };
    let ingress = np["spec"]["ingress"].as_array().unwrap();
    let open: BTreeSet<u64> = ingress
        .iter()
        .filter(|r| r["from"].is_null())
        .flat_map(rule_ports)
        .collect();
    assert_eq!(
        open,
        BTreeSet::from([ports["tls"], ports["ssh"]]),
        "ingress from anywhere"
    );
    let admin_rules: Vec<&Value> = ingress
        .iter()
        .filter(|r| rule_ports(r).contains(&ports["admin"]))
        .collect();
    assert_eq!(admin_rules.len(), 1);
    assert!(
        admin_rules[0]["from"][0]["namespaceSelector"].is_object(),
        "admin only from a namespace"
    );
    let egress: BTreeSet<u64> = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(rule_ports)
        .collect();
    assert!(egress.contains(&53), "egress DNS");
    let backend_ports: BTreeSet<u64> = edge["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| u64::from(port_of(r["backend"].as_str().unwrap())))
        .collect();
    assert!(
        backend_ports.is_subset(&egress),
        "egress to the routes' backends {backend_ports:?}"
    );
}

fn volume_sources(spec: &Value) -> Vec<Value> {
    spec["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .expect("a volume named config")["projected"]["sources"]
        .as_array()
        .expect("config is a projected volume")
        .clone()
}

/// What each Secret key holds, from the lab's files: (secret, key) → lab file or content.
fn secret_content(lab: &Lab, secret: &str, key: &str) -> Vec<u8> {
    let file = match (secret, key) {
        ("ssh-edge-tls", "tls.crt") => "tls-cert.pem",
        ("ssh-edge-tls", "tls.key") => "tls-key.pem",
        ("ssh-edge-host-key", "ssh_host_ed25519_key") => "edge_host_ed25519",
        ("ssh-edge-edge-ca", "edge_ca") => "edge_ca",
        ("ssh-edge-admin-token", "admin-token") => {
            return b"0123456789abcdef0123456789abcdef\n".to_vec();
        }
        other => panic!("deployment mounts {other:?}: teach this test what it holds"),
    };
    std::fs::read(lab.path(file)).unwrap()
}

#[test]
fn edge_toml_passes_check_config_with_the_files_the_pod_mounts() {
    let all = resources();
    let d = one(&all, "Deployment", "ssh-edge");
    let spec = &d["spec"]["template"]["spec"];
    let mount_path = spec["containers"][0]["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap()["mountPath"]
        .as_str()
        .unwrap()
        .to_string();

    // Lay the projected volume out in a temp dir, with real keys from a lab.
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::create(&tmp.path().join("lab"), &["abc1234"]).expect("lab (needs sshd)");
    let root = tmp.path().join("etc-ssh-edge");
    let edge_toml =
        configmap_edge_toml().replace(&format!("{mount_path}/"), &format!("{}/", root.display()));
    let example_secrets = yaml_docs(&deploy("kubernetes/secrets.example.yaml"));
    let deploying = readme_section("Deploying");
    for source in volume_sources(spec) {
        let kind = if source["configMap"].is_object() {
            "configMap"
        } else {
            "secret"
        };
        let name = source[kind]["name"]
            .as_str()
            .expect("configMap or secret source");
        let items = source[kind]["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: list items, so the file names are fixed"));
        if kind == "secret" {
            let example = example_secrets
                .iter()
                .find(|s| s["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("secrets.example.yaml lacks {name}"));
            for item in items {
                let key = item["key"].as_str().unwrap();
                assert!(
                    example["stringData"][key].is_string(),
                    "secrets.example.yaml: {name} lacks {key}"
                );
            }
            assert!(
                deploying
                    .lines()
                    .any(|l| l.contains("create secret") && l.contains(&format!(" {name} "))),
                "README Deploying does not create the Secret {name}"
            );
        }
        for item in items {
            let key = item["key"].as_str().unwrap();
            let content = if kind == "configMap" {
                assert_eq!(key, "edge.toml");
                edge_toml.clone().into_bytes()
            } else {
                secret_content(&lab, name, key)
            };
            let path = root.join(item["path"].as_str().unwrap());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
        }
    }
    let config = root.join("edge.toml");
    let out = run(
        ssh_edge().args(["check-config", "--config"]).arg(&config),
        Duration::from_secs(60),
    );
    let all_text = text(&out);
    assert!(
        out.status.success() && all_text.contains("configuration OK"),
        "the ConfigMap's edge.toml with the pod's files:\n{all_text}"
    );
    assert!(
        !all_text.contains("warning"),
        "check-config warns:\n{all_text}"
    );
}
