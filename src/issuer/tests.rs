use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::{Certificate, PublicKey};

use super::api::*;
use super::config::{
    RawApiKey, RawIssuerConfig, RawTenant, RawTrainingJob, proxy_address_ok, validate,
};
use super::sign::*;
use crate::upstream::random_ed25519_key;

fn tenant(name: &str, key: &str) -> Tenant {
    Tenant {
        name: name.into(),
        api_keys: vec![ApiKey {
            id: format!("{name}-key"),
            sha256: digest_api_key(key),
        }],
        user_ca: random_ed25519_key(),
        token_key: EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap(),
        token_kid: format!("{name}-kid"),
        training_jobs: HashMap::from([("abc1234".into(), "p1".into())]),
        models: HashMap::from([("m1x2y3".into(), HashSet::from(["d1".to_string()]))]),
    }
}

fn settings() -> IssueSettings {
    IssueSettings {
        proxy_address: "edge.example:443".into(),
        suffix: "ssh.baseten.co".into(),
        cert_validity: Duration::from_secs(3600),
        token_lifetime: Duration::from_secs(600),
        token_issuer: "ssh-edge".into(),
        token_audience: "ssh-edge".into(),
    }
}

fn public_key_line() -> String {
    random_ed25519_key().public_key().to_openssh().unwrap()
}

#[test]
fn routes_and_methods() {
    assert_eq!(
        route("POST", "/v1/training_jobs/search"),
        Ok(Route::SearchJobs)
    );
    assert_eq!(
        route("POST", "/v1/training_projects/p1/jobs/abc1234/ssh/sign"),
        Ok(Route::SignTraining {
            project_id: "p1".into(),
            job_id: "abc1234".into()
        })
    );
    assert_eq!(
        route("POST", "/v1/models/m1/deployments/d1/ssh/sign"),
        Ok(Route::SignModel {
            model_id: "m1".into(),
            deployment_id: "d1".into()
        })
    );
    assert_eq!(route("POST", "/v1/nope").unwrap_err().status(), 404);
    assert_eq!(
        route("POST", "/v1/training_jobs/search/")
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        route("GET", "/v1/training_jobs/search")
            .unwrap_err()
            .status(),
        405
    );
}

#[test]
fn api_key_header_and_constant_time_lookup() {
    assert_eq!(api_key_from_header(Some(b"Api-Key secret")), Ok("secret"));
    assert_eq!(api_key_from_header(Some(b"api-key  secret ")), Ok("secret"));
    for bad in [
        None,
        Some(&b"Bearer secret"[..]),
        Some(b"Api-Key "),
        Some(b"secret"),
    ] {
        assert_eq!(api_key_from_header(bad), Err(ApiError::MissingApiKey));
    }
    let tenants = [tenant("default", "key-a"), tenant("tenant-b", "key-b")];
    let caller = authenticate(&tenants, "key-b").ok().unwrap();
    assert_eq!(caller.tenant.name, "tenant-b");
    assert_eq!(caller.api_key_id, "tenant-b-key");
    assert_eq!(
        authenticate(&tenants, "key-c").err(),
        Some(ApiError::BadApiKey)
    );
    assert_eq!(ApiError::BadApiKey.status(), 401);
    assert_eq!(
        hex::encode(digest_api_key("abc")),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn ids_and_indexes() {
    assert!(is_hash_id("abc1234"));
    assert!(is_hash_id(&"a".repeat(63)));
    for bad in ["", "ABC", "abc-1", "a.b", "../x", "é", &"a".repeat(64)] {
        assert!(!is_hash_id(bad), "{bad}");
    }
    assert!(is_index("0") && is_index("123456789"));
    for bad in ["", "-1", "1a", "1234567890", " 1"] {
        assert!(!is_index(bad), "{bad}");
    }
}

#[test]
fn search_body_validation_and_ownership() {
    let t = tenant("default", "k");
    assert_eq!(
        parse_search(br#"{"job_id":"abc1234"}"#),
        Ok("abc1234".into())
    );
    let err = parse_search(br#"{"job_id":"ABC!"}"#).unwrap_err();
    assert_eq!(err.to_string(), "Invalid job id: must be a valid hash id");
    assert_eq!(err.status(), 400);
    assert_eq!(parse_search(br#"{"job_id":7}"#).unwrap_err().status(), 400);
    assert!(matches!(
        parse_search(b"nope"),
        Err(ApiError::BadJson { .. })
    ));
    let found = search(&t, "abc1234").unwrap();
    assert_eq!(found["training_jobs"][0]["training_project"]["id"], "p1");
    let missing = search(&t, "other99").unwrap_err();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.to_string(), "training job other99 not found");
}

#[test]
fn sign_validation() {
    let training = Route::SignTraining {
        project_id: "p1".into(),
        job_id: "abc1234".into(),
    };
    let key = public_key_line();
    let body = serde_json::json!({"public_key": key, "replica_id": "0"}).to_string();
    let req = parse_sign(&training, body.as_bytes()).unwrap();
    assert_eq!(req.workload.principal(), "abc1234");
    // Numbers are accepted as indexes too.
    let body = serde_json::json!({"public_key": key, "replica_id": 3}).to_string();
    assert!(parse_sign(&training, body.as_bytes()).is_ok());

    let bad_job = Route::SignTraining {
        project_id: "p1".into(),
        job_id: "Bad_Id".into(),
    };
    assert_eq!(
        parse_sign(&bad_job, body.as_bytes())
            .unwrap_err()
            .to_string(),
        "Invalid job id: must be a valid hash id"
    );
    let bad_model = Route::SignModel {
        model_id: "m1".into(),
        deployment_id: "d-1".into(),
    };
    assert_eq!(
        parse_sign(&bad_model, body.as_bytes()).unwrap_err(),
        ApiError::InvalidId { what: "deployment" }
    );
    let no_replica = serde_json::json!({"public_key": key}).to_string();
    assert_eq!(
        parse_sign(&training, no_replica.as_bytes()).unwrap_err(),
        ApiError::MissingReplica
    );
    let bad_replica = serde_json::json!({"public_key": key, "replica_id": "x1"}).to_string();
    assert_eq!(
        parse_sign(&training, bad_replica.as_bytes()).unwrap_err(),
        ApiError::InvalidReplica
    );
    let bad_key =
        serde_json::json!({"public_key": "ssh-ed25519 AAAAnope", "replica_id": "0"}).to_string();
    let err = parse_sign(&training, bad_key.as_bytes()).unwrap_err();
    assert!(matches!(err, ApiError::BadPublicKey { .. }), "{err}");
    assert_eq!(err.status(), 400);
    // A model replica is optional.
    let model = Route::SignModel {
        model_id: "m1x2y3".into(),
        deployment_id: "d1".into(),
    };
    let req = parse_sign(&model, no_replica.as_bytes()).unwrap();
    assert_eq!(
        req.workload,
        Workload::Model {
            model_id: "m1x2y3".into(),
            deployment_id: "d1".into(),
            replica: None
        }
    );
}

#[test]
fn ownership_hides_foreign_workloads_behind_404() {
    let t = tenant("default", "k");
    let job = |project: &str, job: &str| Workload::TrainingJob {
        project_id: project.into(),
        job_id: job.into(),
        node: "0".into(),
    };
    assert!(authorize(&t, &job("p1", "abc1234")).is_ok());
    for (p, j) in [("p2", "abc1234"), ("p1", "other99")] {
        let e = authorize(&t, &job(p, j)).unwrap_err();
        assert_eq!(e.status(), 404);
        assert_eq!(
            e.to_string(),
            format!("training job {j} not found in training project {p}")
        );
    }
    let model = |m: &str, d: &str| Workload::Model {
        model_id: m.into(),
        deployment_id: d.into(),
        replica: Some("2".into()),
    };
    assert!(authorize(&t, &model("m1x2y3", "d1")).is_ok());
    assert_eq!(
        authorize(&t, &model("m1x2y3", "d2")).unwrap_err().status(),
        404
    );
    assert_eq!(
        authorize(&t, &model("zzz", "d1")).unwrap_err().status(),
        404
    );
}

#[test]
fn host_names_follow_the_edge_grammar() {
    let job = Workload::TrainingJob {
        project_id: "p1".into(),
        job_id: "abc1234".into(),
        node: "0".into(),
    };
    assert_eq!(
        job.host("default", "ssh.baseten.co"),
        "training-job-abc1234-0.ssh.baseten.co"
    );
    assert_eq!(
        job.host("tenant-b", "ssh.baseten.co"),
        "training-job-abc1234-0.tenant-b.ssh.baseten.co"
    );
    let model = Workload::Model {
        model_id: "m1x2y3".into(),
        deployment_id: "d1".into(),
        replica: Some("3".into()),
    };
    assert_eq!(
        model.host("default", "s.example"),
        "model-m1x2y3-d1-3.s.example"
    );
    assert!(crate::hostname::fits_dns(
        "training-job-abc1234-0.ssh.baseten.co"
    ));
    assert!(!crate::hostname::fits_dns(&format!(
        "training-job-{}-0.x",
        "a".repeat(63)
    )));
}

#[test]
fn issue_builds_certificate_and_token() {
    let tenants = [tenant("tenant-b", "k")];
    let caller = authenticate(&tenants, "k").ok().unwrap();
    let key = public_key_line();
    let route = Route::SignTraining {
        project_id: "p1".into(),
        job_id: "abc1234".into(),
    };
    let body = serde_json::json!({"public_key": key, "replica_id": "1"}).to_string();
    let req = parse_sign(&route, body.as_bytes()).unwrap();
    let at = Issuance {
        now: 1_700_000_000,
        serial: 42,
        jti: "j1".into(),
    };
    let issued = issue(&settings(), &caller, &req, &at).ok().unwrap();
    let host = "training-job-abc1234-1.tenant-b.ssh.baseten.co";
    assert_eq!(issued.host, host);
    let cert = Certificate::from_openssh(issued.body["ssh_certificate"].as_str().unwrap()).unwrap();
    cert.verify_signature().unwrap();
    assert_eq!(
        cert.signature_key(),
        caller.tenant.user_ca.public_key().key_data()
    );
    assert_eq!(cert.cert_type(), CertType::User);
    assert_eq!(cert.valid_principals(), ["abc1234".to_string()]);
    assert_eq!(cert.serial(), 42);
    assert_eq!(
        cert.key_id(),
        format!("tenant=tenant-b api_key=tenant-b-key workload={host}")
    );
    assert_eq!(cert.valid_after(), 1_700_000_000 - 60);
    assert_eq!(cert.valid_before(), 1_700_003_600);
    assert_eq!(cert.extensions().len(), 5);
    assert_eq!(
        cert.public_key(),
        PublicKey::from_openssh(&key).unwrap().key_data()
    );
    assert_eq!(issued.body["proxy_address"], "edge.example:443");
    assert_eq!(issued.body["ssh_cert_expires_at"], "2023-11-14T23:13:20Z");

    let jwt = issued.body["jwt"].as_str().unwrap();
    let payload = jwt.split('.').nth(1).unwrap();
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(
        claims,
        serde_json::json!({"iss": "ssh-edge", "aud": "ssh-edge", "sub": "tenant:tenant-b/api_key:tenant-b-key",
            "jti": "j1", "host": host, "iat": 1_700_000_000u64, "exp": 1_700_000_600u64})
    );
    // The signature is ES256 by the tenant's token key (the e2e test has the edge verify it).
    let header = jwt.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["kid"], "tenant-b-kid");
    assert_eq!(header["alg"], "ES256");
}

#[test]
fn iso8601() {
    assert_eq!(iso8601_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(iso8601_utc(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(iso8601_utc(4_102_444_799), "2099-12-31T23:59:59Z");
}

#[test]
fn config_lists_every_problem() {
    let raw = RawIssuerConfig {
        listen: "nope".into(),
        proxy_address: "no-port".into(),
        suffix: "Bad..suffix".into(),
        tenants: vec![RawTenant {
            name: "Bad Name".into(),
            api_keys: vec![RawApiKey {
                id: String::new(),
                sha256: "xyz".into(),
            }],
            training_jobs: vec![RawTrainingJob {
                job_id: "BAD".into(),
                project_id: "p1".into(),
                ..RawTrainingJob::default()
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
        "listen:",
        "proxy_address:",
        "suffix:",
        ".name:",
        ".api_keys[0].id: empty",
        ".api_keys[0].sha256: expected 64 hex digits",
        ".user_ca_key_file: missing",
        ".token_key_file: missing",
        ".token_kid: empty",
        ".training_jobs[0].job_id",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in {text}");
    }
    // Secrets never appear: only the hash field name is mentioned.
    assert!(!text.contains("xyz"));
}

#[test]
fn example_config_parses_and_only_misses_its_key_files() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/issuer.example.toml");
    let raw = super::config::load_raw(&path).unwrap();
    assert_eq!(raw.tenants.len(), 2);
    assert_eq!(raw.tenants[0].training_jobs[0].project_id, "proj1");
    assert_eq!(
        raw.tenants[0].training_jobs[1].trigger.as_deref(),
        Some("on_demand")
    );
    let Err(err) = validate(&raw) else {
        panic!("the example's /etc/ssh-edge files should not exist here")
    };
    for line in err.to_string().lines().skip(1) {
        assert!(
            line.contains("/etc/ssh-edge/"),
            "unexpected problem: {line}"
        );
    }
}

#[test]
fn proxy_addresses_are_host_and_port() {
    for ok in ["edge.example:443", "127.0.0.1:8443", "[fd00::1]:443"] {
        assert!(proxy_address_ok(ok), "{ok} refused");
    }
    for bad in [
        "no-port",
        "edge.example:",
        "edge.example:0",
        "edge.example:99999",
        ":443",
        "fd00::1:443",
        "[fd00::1]",
        "user@edge.example:443",
        "edge.example:443/path",
        "",
    ] {
        assert!(!proxy_address_ok(bad), "{bad} accepted");
    }
}
