//! Reload on file change, with no signal (a ConfigMap update or a rotated key file): the new
//! configuration applies to new logins, a broken one is refused and the running one stays.

use std::time::Duration;

use crate::harness::{Door, http_get, text};

#[test]
fn changed_files_are_reloaded_without_a_signal() {
    let mut raw = None;
    let mut door = Door::start(|r, lab| {
        r.reload.watch_interval_secs = 1;
        let file = lab.path("admin-token");
        std::fs::write(&file, "first-admin-token-0123456789\n").unwrap();
        r.admin.bearer_token_file = Some(file);
        raw = Some(r.clone());
    });
    let mut raw = raw.unwrap();
    let reloads = |door: &Door, outcome: &str, n: u64| {
        door.wait_metric(
            &format!("ssh_edge_config_reloads_total{{outcome=\"{outcome}\"}}"),
            Duration::from_secs(20),
            |v| v == n,
        )
    };
    let out = door.ssh(&door.user_key, &[], "echo in");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "in\n",
        "{}",
        text(&out)
    );

    // The config file changes: the user's key id is revoked.
    raw.remotes.get_mut("default").unwrap().revoked_key_ids = vec!["door-user".into()];
    door.lab.write_config(&raw).unwrap();
    reloads(&door, "ok", 1);
    let out = door.ssh(&door.user_key, &[], "echo in");
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));

    // A file the config names changes: the admin token is rotated.
    std::fs::write(
        door.lab.path("admin-token"),
        "second-admin-token-0123456789\n",
    )
    .unwrap();
    let old = door
        .admin_token
        .replace("second-admin-token-0123456789".into());
    reloads(&door, "ok", 2);
    let r = http_get(door.admin, "/metrics", old.as_deref());
    assert!(
        r.starts_with("HTTP/1.1 401"),
        "the old token still works: {r}"
    );

    // A broken config is refused; the running one stays (still revoking), the edge lives.
    std::fs::write(door.lab.path("edge.toml"), "[listen]\nssh = \"nonsense\"\n").unwrap();
    reloads(&door, "error", 1);
    let out = door.ssh(&door.user_key, &[], "echo in");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "{}",
        text(&out)
    );
    assert!(
        door.log()
            .contains("reload failed; keeping the running config")
    );
}
