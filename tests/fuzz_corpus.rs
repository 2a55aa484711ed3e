//! The fuzz targets' committed seed corpus (`fuzz/corpus/<target>/`) replayed through the same
//! target bodies libFuzzer runs (`ssh_edge::fuzz_entry`), without instrumentation: every seed,
//! and every input a fuzzer once crashed on (kept there after its fix), is a regression test.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use ssh_edge::fuzz_entry;

/// Replays every file of `fuzz/corpus/<target>`, naming those that panic.
fn replay(target: &str, body: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{target}: only {} seeds in {}",
        files.len(),
        dir.display()
    );
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("a corpus file");
            catch_unwind(AssertUnwindSafe(|| body(&data))).is_err()
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "{target}: panicked on {failed:?}");
}

#[test]
fn hostname() {
    replay("hostname", fuzz_entry::hostname);
}

#[test]
fn token_preamble() {
    replay("token_preamble", fuzz_entry::token_preamble);
}

#[test]
fn jwt() {
    replay("jwt", fuzz_entry::jwt);
}

#[test]
fn token_key() {
    replay("token_key", fuzz_entry::token_key);
}

#[test]
fn config() {
    replay("config", fuzz_entry::config);
}

#[test]
fn issuer_json() {
    replay("issuer_json", fuzz_entry::issuer_json);
}

#[test]
fn proxy() {
    replay("proxy", fuzz_entry::proxy);
}

/// The seeds named valid are: the corpus reaches the parsers' accepting paths, not only their
/// first refusal.
#[test]
fn valid_seeds_are_accepted() {
    let seed = |target: &str, name: &str| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target)
            .join(name);
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        data[1..].to_vec()
    };
    let text = |target: &str, name: &str| String::from_utf8(seed(target, name)).expect("UTF-8");

    let claims = ssh_edge::auth::token::verify_token(
        fuzz_entry::token_policy(),
        &seed("jwt", "tok_valid"),
        fuzz_entry::NOW,
    )
    .expect("the valid token verifies");
    assert_eq!(claims.host, "training-job-abc1234-0.ssh.baseten.co");
    let preamble = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/token_preamble/valid"),
    )
    .expect("the preamble seed");
    ssh_edge::auth::token::verify_token(
        fuzz_entry::token_policy(),
        &preamble[4..],
        fuzz_entry::NOW,
    )
    .expect("the preamble's token verifies");

    let host = fuzz_entry::grammar()
        .parse_host(&text("hostname", "host_model_remote"))
        .expect("a model host with a remote");
    assert_eq!(host.remote.as_deref(), Some("acme"));
    ssh_edge::auth::token::TokenKey::from_pem("k", &text("token_key", "pem_valid"))
        .expect("the PEM key");
    let raw = ssh_edge::config::load_raw_str(&text("config", "with_token_key"))
        .expect("the config parses");
    assert_eq!(raw.remotes["default"].token_keys.len(), 1);
    let route = ssh_edge::issuer::api::Route::SignTraining {
        project_id: "proj1".into(),
        job_id: "abc1234".into(),
    };
    ssh_edge::issuer::api::parse_sign(&route, &seed("issuer_json", "sign_training"))
        .expect("the sign body");
    let parsed = ssh_edge::admission::proxy::parse(
        &seed("proxy", "v2_tcp4"),
        ssh_edge::admission::proxy::ProxyMode::Any,
    )
    .expect("the v2 header");
    assert!(matches!(
        parsed,
        ssh_edge::admission::proxy::Parsed::Header {
            source: Some(_),
            version: "v2",
            ..
        }
    ));
}
