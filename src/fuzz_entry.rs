//! The fuzz targets' bodies: one function per parser fed by the network or by operators, each
//! taking arbitrary bytes and returning normally whatever they are. They live here, not in
//! `fuzz/`, so that `tests/fuzz_corpus.rs` replays the committed corpus through exactly the code
//! libFuzzer runs, on a plain `cargo test`. A panic (an assertion below, an overflow, an index
//! out of range) is a finding.
//!
//! Where one parser has several entry points, the first input byte picks one (`mode`), so a
//! single corpus covers them all. Nothing here touches the file system or the network.

use std::sync::OnceLock;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::admission::proxy::{self, Parsed, ProxyMode};
use crate::auth::token::{MAX_TOKEN_LEN, TokenKey, TokenPolicy, verify_token};
use crate::config::RawConfig;
use crate::hostname::{HostGrammar, KindSpec, Target};
use crate::issuer::api::{self, Route};

/// The fixed clock of the token targets (seconds since the epoch).
pub const NOW: u64 = 1_700_000_000;
/// `iss` and `aud` the token targets' policy requires.
pub const ISSUER: &str = "https://issuer.example";
pub const AUDIENCE: &str = "ssh-edge";
/// Remote names the host-name grammar knows besides the default.
pub const REMOTES: [&str; 2] = ["acme", "eu-west"];

/// The first byte, and the rest.
fn mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((m, rest)) => (*m, rest),
        None => (0, data),
    }
}

/// A current-thread runtime for the async readers (the time driver serves their timeouts).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime")
    })
}

/// The default configuration's workload kinds with [`REMOTES`].
pub fn grammar() -> &'static HostGrammar {
    static G: OnceLock<HostGrammar> = OnceLock::new();
    G.get_or_init(|| {
        let hosts = RawConfig::default().hosts;
        let remotes: Vec<String> = REMOTES.iter().map(|r| (*r).to_string()).collect();
        HostGrammar::new(&hosts.suffix, &hosts.kinds, &remotes).expect("the default grammar")
    })
}

/// What every parsed target must satisfy: canonical, and parsed again to itself.
fn check_target(grammar: &HostGrammar, target: &Target) {
    assert!(target.host.len() <= 253, "host name over 253 bytes");
    assert_eq!(target.host, target.host.to_ascii_lowercase());
    assert!(!target.host.ends_with('.'));
    let again = grammar
        .parse_host(&target.host)
        .expect("a canonical host name parses again");
    assert_eq!(&again, target, "parsing the canonical name changed it");
    for template in [
        "{host}",
        "{workload}:{remote}:{kind}",
        "{job_id}-{node}.svc:22",
    ] {
        let _ = target.expand(template);
    }
}

/// Workload host names: mode 0 a full host name (SNI, token `host`), 1 an SSH user name, 2 an
/// operator's kind template (first line) and a host name parsed with it (the rest).
pub fn hostname(data: &[u8]) {
    let (mode, rest) = mode(data);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match mode % 3 {
        0 => {
            if let Ok(t) = grammar().parse_host(text) {
                check_target(grammar(), &t);
            }
        }
        1 => {
            if let Ok(t) = grammar().parse_user_target(text) {
                check_target(grammar(), &t);
            }
        }
        _ => {
            let (template, host) = text.split_once('\n').unwrap_or((text, ""));
            let _ = crate::hostname::placeholders(template);
            let kinds = [KindSpec {
                name: "k".into(),
                template: template.into(),
            }];
            let remotes = vec![REMOTES[0].to_string()];
            if let Ok(g) = HostGrammar::new("ssh.example.com", &kinds, &remotes) {
                let _ = g.expected();
                if let Ok(t) = g.parse_host(host) {
                    check_target(&g, &t);
                    let _ = t.expand(template);
                }
            }
        }
    }
}

/// Front B's preamble as read from a socket, and the token it yields verified as the edge does.
pub fn token_preamble(data: &[u8]) {
    let mut stream = data;
    let read = runtime().block_on(crate::front::token::read_preamble(
        &mut stream,
        Duration::from_secs(5),
    ));
    // The frame as the protocol defines it: 4-byte length 1..=16 KiB, then that many bytes.
    let framed = data.split_first_chunk::<4>().and_then(|(len, rest)| {
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        let max = crate::front::token::MAX_TOKEN_LEN;
        (1..=max).contains(&len).then(|| rest.get(..len)).flatten()
    });
    match (read, framed) {
        (Ok(token), Some(expected)) => {
            assert_eq!(
                token, expected,
                "the preamble's token is not the framed bytes"
            );
            let _ = verify(&token);
        }
        (Err(_), None) => {}
        (read, framed) => panic!("read_preamble {read:?} for a frame {framed:?}"),
    }
}

/// PKCS#8 of the token targets' signing key `k1`: fixed, so the committed corpus can hold
/// tokens it signed (`fuzz/make_corpus.py` has the same key). Trusted by nothing but
/// [`token_policy`]; the fuzzer cannot forge signatures, so mode 1 of [`jwt`] signs with it.
pub const FUZZ_KEY_PKCS8: &str = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg63g24ikY8JkP0BRSI8bsOE05j40yXc6kUDB/WmLJKGmhRANCAAQktWYIGVkWRnf1GGXLLDS34GZ+M0i3CZ6gcfqM+YXNesP4UWItn3tAnE1jtQtuU7W3PPfSpziitkVKuMkFCRYP";

fn key_pair(pkcs8: &[u8]) -> EcdsaKeyPair {
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).expect("a P-256 PKCS#8 key")
}

fn signing_key() -> &'static EcdsaKeyPair {
    static K: OnceLock<EcdsaKeyPair> = OnceLock::new();
    K.get_or_init(|| key_pair(&STANDARD.decode(FUZZ_KEY_PKCS8).expect("base64")))
}

/// Two trusted keys: `k1` (the signing key) and `k2` (another, so `kid` lookup has a choice).
pub fn token_policy() -> &'static TokenPolicy {
    static P: OnceLock<TokenPolicy> = OnceLock::new();
    P.get_or_init(|| {
        let rng = SystemRandom::new();
        let other = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map(|p| key_pair(p.as_ref()))
            .expect("a P-256 key");
        let key = |kid: &str, pair: &EcdsaKeyPair| TokenKey {
            kid: kid.into(),
            public_key: pair.public_key().as_ref().to_vec(),
        };
        TokenPolicy {
            keys: vec![key("k1", signing_key()), key("k2", &other)],
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            max_clock_skew_secs: 60,
            max_lifetime_secs: 600,
        }
    })
}

fn verify(token: &[u8]) -> Option<crate::auth::token::TokenClaims> {
    match verify_token(token_policy(), token, NOW) {
        Ok(claims) => {
            assert!(token.len() <= MAX_TOKEN_LEN);
            assert!(claims.aud.contains(AUDIENCE));
            assert_eq!(claims.iss, ISSUER);
            assert!(claims.exp.saturating_add(60) >= NOW);
            let _ = grammar().parse_host(&claims.host);
            Some(claims)
        }
        Err(rejection) => {
            let _ = rejection.to_string();
            let _ = rejection.reason();
            None
        }
    }
}

/// An accepted token's header and claims, read again by a plain JSON parser, say the same.
fn agrees_with_json(header: &[u8], payload: &[u8], claims: &crate::auth::token::TokenClaims) {
    use serde_json::Value;
    let header: Value = serde_json::from_slice(header).expect("an accepted header is JSON");
    assert_eq!(header["alg"], "ES256");
    assert!(
        header["kid"] == "k1",
        "signed with k1, accepted under {}",
        header["kid"]
    );
    let payload: Value = serde_json::from_slice(payload).expect("accepted claims are JSON");
    for (name, value) in [
        ("iss", &claims.iss),
        ("sub", &claims.sub),
        ("jti", &claims.jti),
        ("host", &claims.host),
    ] {
        assert!(
            payload[name] == **value,
            "claim {name}: {} read as {value:?}",
            payload[name]
        );
    }
    assert_eq!(payload["exp"].as_u64(), Some(claims.exp));
    assert_eq!(payload["iat"].as_u64(), Some(claims.iat));
    assert_eq!(payload["nbf"].as_u64(), claims.nbf);
}

/// JWT verification with a fixed key set and clock: mode 0 a compact token as sent; mode 1 a
/// JOSE header and claims (two lines of JSON, the claims may span several) that are encoded and
/// signed with the trusted key `k1` first, so mutations reach the claim checks.
pub fn jwt(data: &[u8]) {
    let (mode, rest) = mode(data);
    if mode % 2 == 0 {
        let _ = verify(rest);
        return;
    }
    let (header, payload) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let Ok(signature) = signing_key().sign(&SystemRandom::new(), token.as_bytes()) else {
        return;
    };
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    if let Some(claims) = verify(token.as_bytes()) {
        agrees_with_json(header, payload, &claims);
    }
}

/// Token-signing public keys as configured: mode 0 PEM text; mode 1 DER bytes, wrapped in a
/// PEM block here so they reach the `SubjectPublicKeyInfo` parser whatever the input.
pub fn token_key(data: &[u8]) {
    let (mode, rest) = mode(data);
    let der_mode = mode % 2 == 1;
    let parsed = if !der_mode {
        let Ok(pem) = std::str::from_utf8(rest) else {
            return;
        };
        TokenKey::from_pem("k", pem)
    } else {
        let body = STANDARD.encode(rest);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        TokenKey::from_pem("k", &pem)
    };
    match parsed {
        Ok(key) => {
            assert_eq!(key.public_key.len(), 65);
            assert_eq!(key.public_key[0], 0x04);
            // Strict DER: the one encoding of a P-256 SubjectPublicKeyInfo, nothing after it.
            if der_mode {
                assert_eq!(
                    rest.len(),
                    P256_SPKI_PREFIX.len() + 65,
                    "non-canonical DER accepted"
                );
                assert_eq!(&rest[..P256_SPKI_PREFIX.len()], P256_SPKI_PREFIX);
                assert_eq!(&rest[P256_SPKI_PREFIX.len()..], key.public_key.as_slice());
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// DER of a P-256 `SubjectPublicKeyInfo` up to its point: SEQUENCE { SEQUENCE { id-ecPublicKey,
/// prime256v1 }, BIT STRING (no unused bits) }.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Drops every setting that names a file, so validation reads none (their contents are other
/// parsers' business: keys and certificates are fuzzed by their own targets or libraries).
fn without_files(raw: &mut RawConfig) {
    raw.tls.cert_file = None;
    raw.tls.key_file = None;
    raw.ssh.host_key_files.clear();
    raw.ssh.host_certificate_files.clear();
    raw.backend.edge_ca_key_file = None;
    raw.backend.identity_file = None;
    raw.backend.known_hosts_file = None;
    raw.admin.bearer_token_file = None;
    raw.control_plane.token_file = None;
    raw.control_plane.ca_file = None;
    raw.audit.file = None;
}

/// The operator's configuration: mode 0 TOML text over the defaults, validated (file settings
/// dropped); mode 1 a known_hosts file's `@cert-authority` / `@revoked` lines.
pub fn config(data: &[u8]) {
    let (mode, rest) = mode(data);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 1 {
        let _ = crate::auth::host_ca::parse_markers(text);
        return;
    }
    match crate::config::load_raw_str(text) {
        Ok(mut raw) => {
            without_files(&mut raw);
            let _ = crate::config::warnings(&raw);
            if let Err(e) = crate::config::validate(&raw) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The issuer's request bodies: mode 0 a search body, 1 a training-job sign body, 2 a model sign
/// body, 3 a method and path (first line) routed, with the rest as that route's body.
pub fn issuer_json(data: &[u8]) {
    let (mode, body) = mode(data);
    let signed = |route: &Route, body: &[u8]| {
        if let Ok(req) = api::parse_sign(route, body) {
            let host = req.workload.host("acme", "ssh.example.com");
            if crate::hostname::fits_dns(&host) {
                let t = grammar_for_issuer()
                    .parse_host(&host)
                    .expect("a host name the issuer makes parses at the edge");
                assert_eq!(t.remote.as_deref(), Some("acme"));
                let fields = match &req.workload {
                    api::Workload::TrainingJob { job_id, node, .. } => {
                        vec![("job_id", Some(job_id)), ("node", Some(node))]
                    }
                    api::Workload::Model {
                        model_id,
                        deployment_id,
                        replica,
                    } => vec![
                        ("model_id", Some(model_id)),
                        ("deployment_id", Some(deployment_id)),
                        ("replica_id", replica.as_ref()),
                    ],
                };
                for (name, value) in fields {
                    assert_eq!(t.field(name), value.map(String::as_str), "{name} of {host}");
                }
            }
        }
    };
    match mode % 4 {
        0 => {
            if let Ok(id) = api::parse_search(body) {
                assert!(api::is_hash_id(&id));
            }
        }
        1 => signed(
            &Route::SignTraining {
                project_id: "proj1".into(),
                job_id: "abc1234".into(),
            },
            body,
        ),
        2 => signed(
            &Route::SignModel {
                model_id: "m1".into(),
                deployment_id: "d1".into(),
            },
            body,
        ),
        _ => {
            let (line, body) = match body.iter().position(|b| *b == b'\n') {
                Some(i) => (&body[..i], &body[i + 1..]),
                None => (body, &[][..]),
            };
            let Ok(line) = std::str::from_utf8(line) else {
                return;
            };
            let (method, path) = line.split_once(' ').unwrap_or((line, ""));
            match api::route(method, path) {
                Ok(Route::SearchJobs) => {
                    let _ = api::parse_search(body);
                }
                Ok(route) => signed(&route, body),
                Err(e) => {
                    let _ = (e.to_string(), e.status());
                }
            }
        }
    }
}

/// The edge's grammar for the issuer's suffix (`ssh.example.com`) and remote `acme`.
fn grammar_for_issuer() -> &'static HostGrammar {
    static G: OnceLock<HostGrammar> = OnceLock::new();
    G.get_or_init(|| {
        let kinds = RawConfig::default().hosts.kinds;
        HostGrammar::new("ssh.example.com", &kinds, &["acme".to_string()])
            .expect("the default kinds")
    })
}

/// The PROXY protocol header, v1 and v2: mode picks the accepted version(s). The bytes are
/// parsed whole, and read as from a socket (in 512-byte reads, as the edge does).
pub fn proxy(data: &[u8]) {
    let (mode, rest) = mode(data);
    let mode = match mode % 4 {
        0 => ProxyMode::Any,
        1 => ProxyMode::V1,
        2 => ProxyMode::V2,
        _ => ProxyMode::Off,
    };
    let whole = proxy::parse(rest, mode);
    if let Ok(Parsed::Header { len, .. }) = whole {
        assert!(len <= rest.len(), "header longer than its input");
        assert!(len <= proxy::MAX_HEADER_LEN);
    }
    let mut stream = rest;
    let read = runtime().block_on(proxy::read_header(
        &mut stream,
        mode,
        Duration::from_secs(5),
    ));
    match read {
        Ok(header) => {
            let consumed = rest.len() - stream.len();
            assert!(header.rest.len() <= consumed);
            let header_len = consumed - header.rest.len();
            assert_eq!(&rest[header_len..consumed], header.rest.as_slice());
            // Read in pieces or parsed whole, the same header.
            let expected = Parsed::Header {
                len: header_len,
                source: header.source,
                version: header.version,
            };
            assert_eq!(whole, Ok(expected), "read_header and parse disagree");
        }
        Err(e) => {
            let _ = (e.to_string(), e.is_missing());
        }
    }
}
