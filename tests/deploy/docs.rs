//! The operator's documentation kept complete against the code: every config key in the
//! README's configuration reference and in the annotated example configs, every registered
//! metric in the README's metrics table.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{read, readme_section, repo};

/// The keys one config table accepts, as the loader's own "unknown key" problem lists them:
/// `toml` holds one unknown key at the path `at`; `load` returns the problems of a file.
fn accepted_keys(
    toml: &str,
    at: &str,
    load: impl Fn(&Path) -> Result<(), Vec<String>>,
) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(&file, toml).unwrap();
    let problems = load(&file).expect_err(toml);
    let line = problems
        .iter()
        .find(|p| p.starts_with(&format!("{at}: unknown key")))
        .unwrap_or_else(|| panic!("no unknown-key problem for {at} in {problems:?}"));
    let (_, keys) = line
        .split_once("expected one of ")
        .unwrap_or_else(|| panic!("{line}"));
    keys.split(", ").map(str::to_owned).collect()
}

fn edge_keys(toml: &str, at: &str) -> Vec<String> {
    use ssh_edge::config::{ConfigError, check};
    accepted_keys(toml, at, |file| {
        check(Some(file), false)
            .map(drop)
            .map_err(|ConfigError::Invalid(problems)| problems)
    })
}

fn issuer_keys(toml: &str, at: &str) -> Vec<String> {
    use ssh_edge::issuer::{IssuerConfigError, load};
    accepted_keys(toml, at, |file| {
        load(file)
            .map(drop)
            .map_err(|IssuerConfigError::Invalid(problems)| problems)
    })
}

/// Whether an annotated example config shows `key`: `key = …` on a line of its own (maybe
/// commented out), inline (`{ key = …`), or as a table header (`[key]`, `[[key]]`,
/// `[parent.key]`).
fn shown_in_example(example: &str, key: &str) -> bool {
    example.lines().any(|l| {
        let l = l.trim_start_matches(['#', ' ']);
        l.starts_with(&format!("{key} ="))
            || l.starts_with(&format!("[{key}]"))
            || l.starts_with(&format!("[[{key}]]"))
            || (l.starts_with('[') && l.contains(&format!(".{key}]")))
            || l.contains(&format!("{{ {key} ="))
            || l.contains(&format!(", {key} ="))
    })
}

/// Every key the config accepts has a row in the README's configuration reference and is shown
/// in `config/example.toml` (which says it lists every field), so a key added without
/// documentation fails here.
#[test]
fn every_config_key_is_in_the_readme_reference_and_the_example() {
    let reference = readme_section("Configuration reference");
    // A key is documented on a row that names its table: `listen.backlog`, or a row of
    // several keys of one table (`remotes.<name>.idle_timeout_secs`, `max_session_secs`, …).
    let documented = |table: &str, key: &str| {
        reference.lines().any(|row| {
            row.starts_with(&format!("| `{table}."))
                && row.split('|').nth(1).is_some_and(|names| {
                    names.contains(&format!("{table}.{key}`"))
                        || names.contains(&format!("`{key}`"))
                })
        })
    };
    // Route lifetimes are documented once, on the remotes row ("the same keys on [[routes]]
    // win").
    let lifetime = [
        "idle_timeout_secs",
        "max_session_secs",
        "disconnect_at_cert_expiry",
    ];
    let example = read(&repo().join("config/example.toml"));
    let tables = edge_keys("zz = 1\n", "zz");
    assert!(tables.len() >= 10, "{tables:?}");
    let (mut missing, mut not_in_example) = (Vec::new(), Vec::new());
    for table in &tables {
        let (toml, at, row_table) = match table.as_str() {
            "remotes" => (
                "[remotes.x]\nzz = 1\n".to_string(),
                "remotes.x.zz".to_string(),
                "remotes.<name>".to_string(),
            ),
            "routes" => (
                "[[routes]]\nzz = 1\n".to_string(),
                "routes.0.zz".to_string(),
                "routes[]".to_string(),
            ),
            t => (format!("[{t}]\nzz = 1\n"), format!("{t}.zz"), t.to_string()),
        };
        for key in edge_keys(&toml, &at) {
            let documented = documented(&row_table, &key)
                || (table == "routes"
                    && lifetime.contains(&key.as_str())
                    && documented("remotes.<name>", &key));
            if !documented {
                missing.push(format!("{row_table}.{key}"));
            }
            if !shown_in_example(&example, &key) {
                not_in_example.push(format!("{row_table}.{key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in README's configuration reference: {missing:?}"
    );
    assert!(
        not_in_example.is_empty(),
        "not in config/example.toml: {not_in_example:?}"
    );
}

/// The README says the issuer's annotated example lists every field: each key the issuer's
/// config accepts is set (or shown commented out) in `config/issuer.example.toml`.
#[test]
fn every_issuer_config_key_is_in_the_annotated_example() {
    let example = read(&repo().join("config/issuer.example.toml"));
    let tables = [
        ("zz = 1\n", "zz"),
        ("[tls]\nzz = 1\n", "tls.zz"),
        ("[certificate]\nzz = 1\n", "certificate.zz"),
        ("[token]\nzz = 1\n", "token.zz"),
        ("[control_plane]\nzz = 1\n", "control_plane.zz"),
        ("[[tenants]]\nzz = 1\n", "tenants.0.zz"),
        (
            "[[tenants]]\n[[tenants.api_keys]]\nzz = 1\n",
            "tenants.0.api_keys.0.zz",
        ),
        (
            "[[tenants]]\n[[tenants.training_jobs]]\nzz = 1\n",
            "tenants.0.training_jobs.0.zz",
        ),
        (
            "[[tenants]]\n[[tenants.models]]\nzz = 1\n",
            "tenants.0.models.0.zz",
        ),
    ];
    let mut missing = Vec::new();
    for (toml, at) in tables {
        for key in issuer_keys(toml, at) {
            if !shown_in_example(&example, &key) {
                missing.push(format!("{}{key}", at.trim_end_matches("zz")));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not in config/issuer.example.toml: {missing:?}"
    );
}

/// Every metric the edge registers has a row in the README's metrics table, and every row names
/// a metric that exists (metric names are the string literals `src/metrics.rs` registers).
#[test]
fn every_metric_is_in_the_readme_table() {
    let source = read(&repo().join("src/metrics.rs"));
    let registered: BTreeSet<&str> = source
        .split('"')
        .filter(|s| {
            s.starts_with("ssh_edge_") && s.bytes().all(|b| b == b'_' || b.is_ascii_lowercase())
        })
        .collect();
    assert!(registered.len() >= 20, "{registered:?}");
    let section = readme_section("Metrics");
    let rows: BTreeSet<&str> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .filter(|name| name.starts_with("ssh_edge_"))
        .collect();
    let undocumented: Vec<_> = registered.difference(&rows).collect();
    let unknown: Vec<_> = rows.difference(&registered).collect();
    assert!(
        undocumented.is_empty(),
        "metrics missing from README's table: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "README's table names metrics the edge has not: {unknown:?}"
    );
}
