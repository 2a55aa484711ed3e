use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_700_000_000;
const SKEW: u64 = 60;
const LIFETIME: u64 = 24 * 3600;
const ISSUER: &str = "https://tokens.example.test";
const AUDIENCE: &str = "ssh-edge";
const HOST: &str = "training-job-abc1234-0.ssh.baseten.co";
/// `SubjectPublicKeyInfo` DER prefix for an uncompressed P-256 point.
const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

fn key_pair() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
}

fn token_key(kid: &str, kp: &EcdsaKeyPair) -> TokenKey {
    TokenKey {
        kid: kid.to_owned(),
        public_key: kp.public_key().as_ref().to_vec(),
    }
}

fn policy(keys: Vec<TokenKey>) -> TokenPolicy {
    TokenPolicy {
        keys,
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        max_clock_skew_secs: SKEW,
        max_lifetime_secs: LIFETIME,
    }
}

/// One key "k1" and a policy trusting it.
fn setup() -> (EcdsaKeyPair, TokenPolicy) {
    let kp = key_pair();
    let policy = policy(vec![token_key("k1", &kp)]);
    (kp, policy)
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user@example.com",
        "jti": "tok-0001",
        "host": HOST,
        "iat": NOW - 10,
        "exp": NOW + 3600,
    })
}

/// `claims()` with `field` set to `value`, or removed for `None`.
fn claims_with(field: &str, value: Option<Value>) -> Value {
    let mut c = claims();
    let obj = c.as_object_mut().unwrap();
    match value {
        Some(v) => obj.insert(field.to_owned(), v),
        None => obj.remove(field),
    };
    c
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with an arbitrary header, ES256-signed by `kp` over the exact JSON texts given.
fn sign_raw(kp: &EcdsaKeyPair, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

fn sign_header(kp: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    sign_raw(kp, &header.to_string(), &claims.to_string())
}

fn good_token(kp: &EcdsaKeyPair) -> String {
    sign_token(kp, "k1", &claims()).unwrap()
}

fn verify(policy: &TokenPolicy, token: &str) -> Result<TokenClaims, TokenRejection> {
    verify_token(policy, token.as_bytes(), NOW)
}

fn reject(policy: &TokenPolicy, token: &str) -> TokenRejection {
    verify(policy, token).unwrap_err()
}

fn assert_reason(policy: &TokenPolicy, token: &str, reason: &str) -> TokenRejection {
    let err = reject(policy, token);
    assert_eq!(err.reason(), reason, "{err}");
    err
}

fn pem_for(kp: &EcdsaKeyPair) -> String {
    let mut der = unhex(P256_SPKI_PREFIX);
    der.extend_from_slice(kp.public_key().as_ref());
    pem_wrap(&der)
}

fn pem_wrap(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem
}

/// Tiny hex decoder (no extra dev-dependency).
fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn part(token: &str, i: usize) -> String {
    token.split('.').nth(i).unwrap().to_owned()
}

// --- acceptance -------------------------------------------------------------------------------

#[test]
fn good_token_accepted_and_claims_returned() {
    let (kp, policy) = setup();
    let claims = verify(&policy, &good_token(&kp)).unwrap();
    assert_eq!(
        claims,
        TokenClaims {
            iss: ISSUER.to_owned(),
            aud: Audience::One(AUDIENCE.to_owned()),
            sub: "user@example.com".to_owned(),
            jti: "tok-0001".to_owned(),
            host: HOST.to_owned(),
            iat: NOW - 10,
            exp: NOW + 3600,
            nbf: None,
        }
    );
}

#[test]
fn good_token_with_nbf_and_extra_claims_accepted() {
    let (kp, policy) = setup();
    let mut c = claims_with("nbf", Some(json!(NOW - 5)));
    c["scope"] = json!(["ssh"]);
    let got = verify(&policy, &sign_token(&kp, "k1", &c).unwrap()).unwrap();
    assert_eq!(got.nbf, Some(NOW - 5));
}

#[test]
fn header_without_typ_accepted() {
    let (kp, policy) = setup();
    let token = sign_header(&kp, &json!({"alg": "ES256", "kid": "k1"}), &claims());
    verify(&policy, &token).unwrap();
}

#[test]
fn token_claims_deserialize_matches_protocol() {
    let c: TokenClaims =
        serde_json::from_value(claims_with("aud", Some(json!(["a", "b"])))).unwrap();
    assert_eq!(c.aud, Audience::Many(vec!["a".to_owned(), "b".to_owned()]));
    assert!(c.aud.contains("b") && !c.aud.contains("c"));
    assert_eq!(c.nbf, None);
}

#[test]
fn sign_token_header_is_es256_jwt_with_kid() {
    let kp = key_pair();
    let token = sign_token(&kp, "k1", &claims()).unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part(&token, 0)).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": "k1"}));
    assert_eq!(URL_SAFE_NO_PAD.decode(part(&token, 2)).unwrap().len(), 64);
}

// --- key rotation -----------------------------------------------------------------------------

#[test]
fn key_rotation_accepts_tokens_from_either_key() {
    let (old, new) = (key_pair(), key_pair());
    let policy = policy(vec![token_key("2024-01", &old), token_key("2024-06", &new)]);
    let t_old = sign_token(&old, "2024-01", &claims()).unwrap();
    let t_new = sign_token(&new, "2024-06", &claims()).unwrap();
    verify(&policy, &t_old).unwrap();
    verify(&policy, &t_new).unwrap();
    // The kid selects the key: a token naming the other key does not verify.
    let crossed = sign_token(&new, "2024-01", &claims()).unwrap();
    let err = assert_reason(&policy, &crossed, "bad_signature");
    assert!(err.to_string().contains("\"2024-01\""), "{err}");
}

// --- signature --------------------------------------------------------------------------------

#[test]
fn flipped_signature_byte_rejected() {
    let (kp, policy) = setup();
    let token = good_token(&kp);
    let mut sig = URL_SAFE_NO_PAD.decode(part(&token, 2)).unwrap();
    sig[10] ^= 0x01;
    let forged = format!("{}.{}.{}", part(&token, 0), part(&token, 1), b64(&sig));
    let err = assert_reason(&policy, &forged, "bad_signature");
    assert_eq!(err, TokenRejection::BadSignature { kid: "k1".into() });
}

#[test]
fn tampered_payload_rejected() {
    let (kp, policy) = setup();
    let token = good_token(&kp);
    let evil = claims_with("host", Some(json!("other-tenant-0.ssh.baseten.co")));
    let forged = format!(
        "{}.{}.{}",
        part(&token, 0),
        b64(evil.to_string().as_bytes()),
        part(&token, 2)
    );
    assert_reason(&policy, &forged, "bad_signature");
}

#[test]
fn signature_checked_before_claims() {
    // A substituted payload that is not even a claims object: the signature failure wins.
    let (kp, policy) = setup();
    let token = good_token(&kp);
    let forged = format!("{}.{}.{}", part(&token, 0), b64(b"[1,2]"), part(&token, 2));
    assert_reason(&policy, &forged, "bad_signature");
}

#[test]
fn signature_of_wrong_length_rejected() {
    let (kp, policy) = setup();
    // DER (ASN.1) ECDSA signature instead of the fixed r||s form.
    let asn1 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    let token = good_token(&kp);
    let input = format!("{}.{}", part(&token, 0), part(&token, 1));
    let der_sig = asn1.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let err = assert_reason(
        &policy,
        &format!("{input}.{}", b64(der_sig.as_ref())),
        "bad_signature",
    );
    assert!(
        matches!(err, TokenRejection::SignatureLength { .. }),
        "{err}"
    );
    let err = assert_reason(&policy, &format!("{input}."), "bad_signature");
    assert_eq!(
        err,
        TokenRejection::SignatureLength {
            kid: "k1".into(),
            len: 0
        }
    );
}

#[test]
fn unknown_kid_rejected() {
    let (kp, policy) = setup();
    let token = sign_token(&kp, "k9", &claims()).unwrap();
    let err = assert_reason(&policy, &token, "unknown_kid");
    assert_eq!(err, TokenRejection::UnknownKid { kid: "k9".into() });
}

#[test]
fn missing_or_empty_kid_rejected() {
    let (kp, policy) = setup();
    for header in [json!({"alg": "ES256"}), json!({"alg": "ES256", "kid": ""})] {
        let err = assert_reason(
            &policy,
            &sign_header(&kp, &header, &claims()),
            "unknown_kid",
        );
        assert_eq!(err, TokenRejection::MissingKid);
    }
    let token = sign_header(&kp, &json!({"alg": "ES256", "kid": 1}), &claims());
    assert_reason(&policy, &token, "malformed");
}

// --- algorithms -------------------------------------------------------------------------------

#[test]
fn alg_none_with_empty_signature_rejected() {
    let (_, policy) = setup();
    for alg in ["none", "None", "NONE"] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"}).to_string();
        let token = format!(
            "{}.{}.",
            b64(header.as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let err = assert_reason(&policy, &token, "alg_none");
        assert_eq!(err, TokenRejection::AlgNone { alg: alg.into() });
    }
}

#[test]
fn hs256_signed_with_public_key_rejected() {
    // Algorithm confusion: HMAC keyed with the (public) verification key, in both the raw-point
    // and PEM forms an attacker could find.
    let (kp, policy) = setup();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}).to_string();
    let input = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    let pem = pem_for(&kp);
    for secret in [kp.public_key().as_ref(), pem.as_bytes()] {
        let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
        let token = format!("{input}.{}", b64(mac.as_ref()));
        let err = assert_reason(&policy, &token, "alg_not_allowed");
        assert_eq!(
            err,
            TokenRejection::AlgNotAllowed {
                alg: "HS256".into()
            }
        );
    }
}

#[test]
fn other_algorithms_rejected() {
    let (kp, policy) = setup();
    for alg in [
        "RS256", "RS512", "PS256", "HS384", "HS512", "ES384", "ES512", "EdDSA", "es256", "ES256 ",
    ] {
        // Even with a genuine ES256 signature, the header must say exactly ES256.
        let token = sign_header(&kp, &json!({"alg": alg, "kid": "k1"}), &claims());
        let err = assert_reason(&policy, &token, "alg_not_allowed");
        assert_eq!(err, TokenRejection::AlgNotAllowed { alg: alg.into() });
    }
}

#[test]
fn rs256_header_rejected() {
    let (_, policy) = setup();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}).to_string();
    let token = format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(claims().to_string().as_bytes()),
        b64(&[7u8; 256])
    );
    assert_reason(&policy, &token, "alg_not_allowed");
}

#[test]
fn missing_or_mistyped_alg_rejected() {
    let (kp, policy) = setup();
    let err = assert_reason(
        &policy,
        &sign_header(&kp, &json!({"kid": "k1"}), &claims()),
        "alg_not_allowed",
    );
    assert_eq!(err, TokenRejection::MissingAlg);
    let token = sign_header(&kp, &json!({"alg": ["ES256"], "kid": "k1"}), &claims());
    assert_reason(&policy, &token, "malformed");
}

// --- header fields ----------------------------------------------------------------------------

#[test]
fn typ_other_than_jwt_rejected() {
    let (kp, policy) = setup();
    for typ in ["jwt", "JWS", "at+jwt"] {
        let token = sign_header(
            &kp,
            &json!({"alg": "ES256", "typ": typ, "kid": "k1"}),
            &claims(),
        );
        let err = assert_reason(&policy, &token, "header_not_allowed");
        assert_eq!(err, TokenRejection::TypNotJwt { typ: typ.into() });
    }
    let token = sign_header(
        &kp,
        &json!({"alg": "ES256", "typ": null, "kid": "k1"}),
        &claims(),
    );
    assert_reason(&policy, &token, "malformed");
}

#[test]
fn key_bearing_and_crit_header_fields_rejected() {
    let (kp, policy) = setup();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
    for (field, value) in [
        ("jku", json!("https://evil.example/jwks.json")),
        ("jwk", jwk),
        ("x5u", json!("https://evil.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("crit", json!(["exp"])),
        ("jku", Value::Null),
    ] {
        let mut header = json!({"alg": "ES256", "typ": "JWT", "kid": "k1"});
        header[field] = value;
        // Validly signed by the configured key: still refused.
        let err = assert_reason(
            &policy,
            &sign_header(&kp, &header, &claims()),
            "header_not_allowed",
        );
        assert_eq!(err, TokenRejection::HeaderNotAllowed { field });
    }
}

#[test]
fn duplicate_header_field_rejected() {
    let (kp, policy) = setup();
    let header = r#"{"alg":"ES256","kid":"k1","alg":"none"}"#;
    let err = assert_reason(
        &policy,
        &sign_raw(&kp, header, &claims().to_string()),
        "malformed",
    );
    assert!(err.to_string().contains("duplicate"), "{err}");
}

// --- time -------------------------------------------------------------------------------------

fn with_times(kp: &EcdsaKeyPair, iat: u64, exp: u64, nbf: Option<u64>) -> String {
    let mut c = claims();
    c["iat"] = json!(iat);
    c["exp"] = json!(exp);
    if let Some(nbf) = nbf {
        c["nbf"] = json!(nbf);
    }
    sign_token(kp, "k1", &c).unwrap()
}

#[test]
fn expired_rejected() {
    let (kp, policy) = setup();
    let err = assert_reason(
        &policy,
        &with_times(&kp, NOW - 3600, NOW - SKEW - 1, None),
        "expired",
    );
    assert_eq!(
        err,
        TokenRejection::Expired {
            exp: NOW - SKEW - 1,
            now: NOW,
            skew_secs: SKEW
        }
    );
    // Boundary: exp + skew == now is expired.
    assert_reason(
        &policy,
        &with_times(&kp, NOW - 3600, NOW - SKEW, None),
        "expired",
    );
}

#[test]
fn expiry_within_skew_accepted() {
    let (kp, policy) = setup();
    verify(&policy, &with_times(&kp, NOW - 3600, NOW - SKEW + 1, None)).unwrap();
    verify(&policy, &with_times(&kp, NOW - 3600, NOW - 1, None)).unwrap();
}

#[test]
fn not_yet_valid_nbf_rejected() {
    let (kp, policy) = setup();
    let token = with_times(&kp, NOW, NOW + 3600, Some(NOW + SKEW + 1));
    let err = assert_reason(&policy, &token, "not_yet_valid");
    assert_eq!(
        err,
        TokenRejection::NotYetValid {
            claim: "nbf",
            at: NOW + SKEW + 1,
            now: NOW,
            skew_secs: SKEW
        }
    );
}

#[test]
fn not_yet_valid_iat_rejected() {
    let (kp, policy) = setup();
    let token = with_times(&kp, NOW + SKEW + 1, NOW + 3600, None);
    let err = assert_reason(&policy, &token, "not_yet_valid");
    assert!(
        matches!(err, TokenRejection::NotYetValid { claim: "iat", .. }),
        "{err}"
    );
}

#[test]
fn future_nbf_and_iat_within_skew_accepted() {
    let (kp, policy) = setup();
    verify(
        &policy,
        &with_times(&kp, NOW + SKEW, NOW + 3600, Some(NOW + SKEW)),
    )
    .unwrap();
}

#[test]
fn zero_skew_is_exact() {
    let (kp, mut policy) = setup();
    policy.max_clock_skew_secs = 0;
    verify(&policy, &with_times(&kp, NOW, NOW + 1, Some(NOW))).unwrap();
    assert_reason(&policy, &with_times(&kp, NOW - 10, NOW, None), "expired");
    assert_reason(
        &policy,
        &with_times(&kp, NOW + 1, NOW + 10, None),
        "not_yet_valid",
    );
}

#[test]
fn extreme_times_do_not_overflow() {
    let (kp, mut policy) = setup();
    policy.max_clock_skew_secs = u64::MAX;
    policy.max_lifetime_secs = u64::MAX;
    verify(
        &policy,
        &with_times(&kp, u64::MAX, u64::MAX, Some(u64::MAX)),
    )
    .unwrap();
    let token = with_times(&kp, 0, u64::MAX, None);
    assert!(verify_token(&policy, token.as_bytes(), u64::MAX - 1).is_ok());
}

#[test]
fn lifetime_too_long_rejected() {
    let (kp, policy) = setup();
    let err = assert_reason(
        &policy,
        &with_times(&kp, NOW, NOW + LIFETIME + 1, None),
        "lifetime_too_long",
    );
    assert_eq!(
        err,
        TokenRejection::LifetimeTooLong {
            lifetime_secs: LIFETIME + 1,
            max_secs: LIFETIME
        }
    );
    verify(&policy, &with_times(&kp, NOW, NOW + LIFETIME, None)).unwrap();
}

#[test]
fn exp_before_iat_rejected() {
    let (kp, policy) = setup();
    let err = assert_reason(
        &policy,
        &with_times(&kp, NOW + 30, NOW + 20, None),
        "bad_claims",
    );
    assert!(
        matches!(err, TokenRejection::BadClaims { claim: "exp", .. }),
        "{err}"
    );
}

// --- issuer and audience ----------------------------------------------------------------------

#[test]
fn wrong_issuer_rejected() {
    let (kp, policy) = setup();
    let token = sign_token(
        &kp,
        "k1",
        &claims_with("iss", Some(json!("https://evil.test"))),
    )
    .unwrap();
    let err = assert_reason(&policy, &token, "wrong_issuer");
    assert_eq!(
        err.to_string(),
        format!("token issuer \"https://evil.test\" is not \"{ISSUER}\"")
    );
}

#[test]
fn wrong_audience_string_rejected() {
    let (kp, policy) = setup();
    let token = sign_token(&kp, "k1", &claims_with("aud", Some(json!("other-service")))).unwrap();
    let err = assert_reason(&policy, &token, "wrong_audience");
    assert_eq!(
        err,
        TokenRejection::WrongAudience {
            aud: vec!["other-service".into()],
            expected: AUDIENCE.into()
        }
    );
}

#[test]
fn wrong_audience_array_rejected() {
    let (kp, policy) = setup();
    for aud in [json!(["a", "b", "SSH-EDGE"]), json!([])] {
        let token = sign_token(&kp, "k1", &claims_with("aud", Some(aud))).unwrap();
        assert_reason(&policy, &token, "wrong_audience");
    }
}

#[test]
fn audience_array_containing_ours_accepted() {
    let (kp, policy) = setup();
    let token = sign_token(
        &kp,
        "k1",
        &claims_with("aud", Some(json!(["other", AUDIENCE]))),
    )
    .unwrap();
    let got = verify(&policy, &token).unwrap();
    assert_eq!(
        got.aud,
        Audience::Many(vec!["other".into(), AUDIENCE.into()])
    );
}

// --- claim presence, types and lengths --------------------------------------------------------

#[test]
fn missing_claims_rejected_by_name() {
    let (kp, policy) = setup();
    for claim in ["iss", "aud", "sub", "jti", "host", "iat", "exp"] {
        let token = sign_token(&kp, "k1", &claims_with(claim, None)).unwrap();
        let err = assert_reason(&policy, &token, "bad_claims");
        assert_eq!(
            err,
            TokenRejection::BadClaims {
                claim,
                problem: "is missing".into()
            }
        );
        assert_eq!(
            err.to_string(),
            format!("token claim \"{claim}\" is missing")
        );
    }
}

#[test]
fn mistyped_claims_rejected_by_name() {
    let (kp, policy) = setup();
    for (claim, value) in [
        ("iss", json!(1)),
        ("sub", Value::Null),
        ("host", json!(["a"])),
        ("aud", json!(5)),
        ("aud", json!(["ssh-edge", 5])),
        ("iat", json!("1700000000")),
        ("exp", json!(1.7e9)),
        ("exp", json!(-1)),
        ("nbf", Value::Null),
        ("nbf", json!(1_699_999_999.5)),
    ] {
        let token = sign_token(&kp, "k1", &claims_with(claim, Some(value.clone()))).unwrap();
        let err = assert_reason(&policy, &token, "bad_claims");
        assert!(
            matches!(err, TokenRejection::BadClaims { claim: c, .. } if c == claim),
            "{claim} = {value}: {err}"
        );
    }
}

#[test]
fn empty_host_rejected() {
    let (kp, policy) = setup();
    let token = sign_token(&kp, "k1", &claims_with("host", Some(json!("")))).unwrap();
    let err = assert_reason(&policy, &token, "bad_claims");
    assert_eq!(
        err,
        TokenRejection::BadClaims {
            claim: "host",
            problem: "is empty".into()
        }
    );
}

#[test]
fn empty_sub_and_jti_rejected() {
    let (kp, policy) = setup();
    for claim in ["sub", "jti"] {
        let token = sign_token(&kp, "k1", &claims_with(claim, Some(json!("")))).unwrap();
        let err = assert_reason(&policy, &token, "bad_claims");
        assert!(matches!(err, TokenRejection::BadClaims { claim: c, .. } if c == claim));
    }
}

#[test]
fn claim_length_limits() {
    let (kp, policy) = setup();
    for (claim, max) in [
        ("host", MAX_HOST_LEN),
        ("sub", MAX_SUB_LEN),
        ("jti", MAX_JTI_LEN),
    ] {
        let ok = sign_token(&kp, "k1", &claims_with(claim, Some(json!("a".repeat(max))))).unwrap();
        verify(&policy, &ok).unwrap();
        let long = sign_token(
            &kp,
            "k1",
            &claims_with(claim, Some(json!("a".repeat(max + 1)))),
        )
        .unwrap();
        let err = assert_reason(&policy, &long, "bad_claims");
        assert!(matches!(err, TokenRejection::BadClaims { claim: c, .. } if c == claim));
    }
}

#[test]
fn duplicate_claim_rejected() {
    let (kp, policy) = setup();
    let payload = claims()
        .to_string()
        .replacen('{', &format!("{{\"host\":\"x.{HOST}\","), 1);
    let err = assert_reason(
        &policy,
        &sign_raw(&kp, r#"{"alg":"ES256","kid":"k1"}"#, &payload),
        "malformed",
    );
    assert!(err.to_string().contains("duplicate field `host`"), "{err}");
}

#[test]
fn signed_non_object_payload_rejected() {
    let (kp, policy) = setup();
    let header = r#"{"alg":"ES256","kid":"k1"}"#;
    for payload in [r#"["a","b"]"#, "null", "not json", ""] {
        assert_reason(&policy, &sign_raw(&kp, header, payload), "malformed");
    }
}

// --- structure --------------------------------------------------------------------------------

#[test]
fn two_parts_rejected() {
    let (kp, policy) = setup();
    let token = good_token(&kp);
    let two = format!("{}.{}", part(&token, 0), part(&token, 1));
    let err = assert_reason(&policy, &two, "malformed");
    assert_eq!(
        err.to_string(),
        "malformed token: expected 3 dot-separated parts, found 2"
    );
}

#[test]
fn four_parts_rejected() {
    let (kp, policy) = setup();
    let err = assert_reason(&policy, &format!("{}.AAAA", good_token(&kp)), "malformed");
    assert!(err.to_string().contains("found 4"), "{err}");
}

#[test]
fn bad_base64_rejected() {
    let (kp, policy) = setup();
    let token = good_token(&kp);
    let (h, p, s) = (part(&token, 0), part(&token, 1), part(&token, 2));
    for bad in [
        format!("{h}!.{p}.{s}"),                  // not in the alphabet
        format!("{h}.{p}.{s}="),                  // padding
        format!("+/{h}.{p}.{s}"),                 // standard alphabet
        format!("{h}.{p}.{}", &s[..s.len() - 1]), // truncated signature
        format!("{h}.{p}.{s} "),                  // whitespace
    ] {
        assert_reason(&policy, &bad, "malformed");
    }
}

#[test]
fn non_json_header_rejected() {
    let (kp, policy) = setup();
    let token = good_token(&kp);
    for header in [
        "hello",
        "",
        r#"["ES256"]"#,
        r#"{"alg":"ES256","kid":"k1"} x"#,
    ] {
        let bad = format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            part(&token, 1),
            part(&token, 2)
        );
        assert_reason(&policy, &bad, "malformed");
    }
}

#[test]
fn non_ascii_and_empty_tokens_rejected() {
    let (kp, policy) = setup();
    let mut bytes = good_token(&kp).into_bytes();
    bytes.insert(3, 0xc3);
    let err = verify_token(&policy, &bytes, NOW).unwrap_err();
    assert_eq!(err.reason(), "malformed");
    assert!(err.to_string().contains("0xc3 at offset 3"), "{err}");
    assert_reason(&policy, "", "malformed");
    assert_reason(&policy, "..", "malformed");
}

#[test]
fn over_long_token_rejected() {
    let (kp, policy) = setup();
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    let err = assert_reason(&policy, &huge, "too_long");
    assert_eq!(
        err,
        TokenRejection::TooLong {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        }
    );
    // Even a validly signed token is refused once over the limit.
    let padded = claims_with("pad", Some(json!("p".repeat(MAX_TOKEN_LEN))));
    let token = sign_raw(&kp, r#"{"alg":"ES256","kid":"k1"}"#, &padded.to_string());
    assert_reason(&policy, &token, "too_long");
    assert!(matches!(
        sign_token(&kp, "k1", &padded),
        Err(TokenError::TooLong {
            max: MAX_TOKEN_LEN,
            ..
        })
    ));
}

// --- logging ----------------------------------------------------------------------------------

fn assert_printable(line: &str) {
    assert!(
        line.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "not printable ASCII: {line:?}"
    );
}

#[test]
fn token_strings_escaped_and_truncated_in_log_lines() {
    let (kp, policy) = setup();
    let evil = format!(
        "k\n2025-01-01 INFO forged\u{1b}[31m\u{202e}é{}",
        "x".repeat(1000)
    );
    let token = sign_token(&kp, &evil, &claims()).unwrap();
    let line = reject(&policy, &token).to_string();
    assert_printable(&line);
    assert!(
        line.contains("\\n2025") && line.contains("\\u{1b}") && line.contains("\"..."),
        "{line}"
    );
    assert!(line.len() < 200, "{line}");

    let aud: Vec<String> = (0..40).map(|i| format!("\"aud\"\t{i}")).collect();
    let token = sign_token(&kp, "k1", &claims_with("aud", Some(json!(aud)))).unwrap();
    let line = reject(&policy, &token).to_string();
    assert_printable(&line);
    assert!(
        line.contains(r#""\"aud\"\t0""#) && line.contains("(24 more)"),
        "{line}"
    );

    let token = sign_token(
        &kp,
        "k1",
        &claims_with("iss", Some(json!("\u{0}".repeat(500)))),
    )
    .unwrap();
    let line = reject(&policy, &token).to_string();
    assert_printable(&line);
    assert!(line.len() < 300, "{line}");
}

#[test]
fn every_reason_label_is_stable() {
    let labels = [
        TokenRejection::TooLong { len: 1, max: 0 }.reason(),
        TokenRejection::Malformed {
            detail: String::new(),
        }
        .reason(),
        TokenRejection::AlgNone { alg: "none".into() }.reason(),
        TokenRejection::AlgNotAllowed {
            alg: "HS256".into(),
        }
        .reason(),
        TokenRejection::MissingAlg.reason(),
        TokenRejection::TypNotJwt { typ: "x".into() }.reason(),
        TokenRejection::MissingKid.reason(),
        TokenRejection::UnknownKid { kid: "k".into() }.reason(),
        TokenRejection::HeaderNotAllowed { field: "jwk" }.reason(),
        TokenRejection::SignatureLength {
            kid: "k".into(),
            len: 0,
        }
        .reason(),
        TokenRejection::BadSignature { kid: "k".into() }.reason(),
        TokenRejection::BadClaims {
            claim: "host",
            problem: String::new(),
        }
        .reason(),
        TokenRejection::WrongIssuer {
            iss: String::new(),
            expected: String::new(),
        }
        .reason(),
        TokenRejection::WrongAudience {
            aud: vec![],
            expected: String::new(),
        }
        .reason(),
        TokenRejection::NotYetValid {
            claim: "nbf",
            at: 0,
            now: 0,
            skew_secs: 0,
        }
        .reason(),
        TokenRejection::Expired {
            exp: 0,
            now: 0,
            skew_secs: 0,
        }
        .reason(),
        TokenRejection::LifetimeTooLong {
            lifetime_secs: 0,
            max_secs: 0,
        }
        .reason(),
    ];
    assert_eq!(
        labels,
        [
            "too_long",
            "malformed",
            "alg_none",
            "alg_not_allowed",
            "alg_not_allowed",
            "header_not_allowed",
            "unknown_kid",
            "unknown_kid",
            "header_not_allowed",
            "bad_signature",
            "bad_signature",
            "bad_claims",
            "wrong_issuer",
            "wrong_audience",
            "not_yet_valid",
            "expired",
            "lifetime_too_long",
        ]
    );
}

// --- sign_token -------------------------------------------------------------------------------

#[test]
fn sign_token_refuses_bad_inputs() {
    let kp = key_pair();
    assert_eq!(sign_token(&kp, "", &claims()), Err(TokenError::EmptyKid));
    assert_eq!(
        sign_token(&kp, "k1", &json!([1])),
        Err(TokenError::ClaimsNotObject)
    );
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
    assert_eq!(
        sign_token(&p384, "k1", &claims()),
        Err(TokenError::WrongKeyAlgorithm)
    );
    let asn1 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
    assert_eq!(
        sign_token(&asn1, "k1", &claims()),
        Err(TokenError::WrongKeyAlgorithm)
    );
}

// --- TokenKey::from_pem -----------------------------------------------------------------------

#[test]
fn from_pem_round_trip() {
    let kp = key_pair();
    let pem = pem_for(&kp);
    let key = TokenKey::from_pem("k1", &pem).unwrap();
    assert_eq!(key, token_key("k1", &kp));
    // Tokens verify against the parsed key.
    verify(&policy(vec![key]), &good_token(&kp)).unwrap();
    // CRLF line endings and surrounding whitespace are fine.
    let crlf = format!("\n  {}  \n", pem.replace('\n', "\r\n"));
    assert_eq!(
        TokenKey::from_pem("k1", &crlf).unwrap(),
        token_key("k1", &kp)
    );
}

/// SPKI DER with the given algorithm, parameters and BIT STRING contents.
fn spki(alg_oid: &[u8], params: &[u8], bits: &[u8]) -> Vec<u8> {
    fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 0x80);
        let mut out = vec![tag, u8::try_from(body.len()).unwrap()];
        out.extend_from_slice(body);
        out
    }
    let mut alg = tlv(0x06, alg_oid);
    alg.extend_from_slice(params);
    let mut body = tlv(0x30, &alg);
    body.extend(tlv(0x03, bits));
    tlv(0x30, &body)
}

#[test]
fn spki_helper_matches_fixed_prefix() {
    let kp = key_pair();
    let mut bits = vec![0];
    bits.extend_from_slice(kp.public_key().as_ref());
    let curve = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let der = spki(OID_EC_PUBLIC_KEY, &curve, &bits);
    assert_eq!(&der[..26], unhex(P256_SPKI_PREFIX).as_slice());
}

/// Coarse class of a key error, for table-driven tests.
fn kind(e: &TokenKeyError) -> &'static str {
    match e {
        TokenKeyError::BadDer { .. } => "der",
        TokenKeyError::NotEcKey => "not_ec",
        TokenKeyError::NotP256 => "not_p256",
        TokenKeyError::BadPoint { .. } => "point",
        _ => "other",
    }
}

#[test]
fn garbage_pem_rejected() {
    let kp = key_pair();
    let good = pem_for(&kp);
    let point = kp.public_key().as_ref().to_vec();
    let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let bits = |p: &[u8]| [&[0u8][..], p].concat();

    assert_eq!(TokenKey::from_pem("", &good), Err(TokenKeyError::EmptyKid));
    for text in [
        "",
        "hello",
        &good.replace("PUBLIC KEY", "CERTIFICATE"),
        &good.replace("PUBLIC KEY", "EC PRIVATE KEY"),
        &format!("{good}{good}"),
        &good.replacen("-----\n", "-----", 1),
    ] {
        assert_eq!(
            TokenKey::from_pem("k", text),
            Err(TokenKeyError::NotPem),
            "{text:?}"
        );
    }
    let bad_b64 = good.replacen("MF", "M!", 1);
    assert_eq!(
        TokenKey::from_pem("k", &bad_b64),
        Err(TokenKeyError::BadBase64)
    );
    let empty = "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n";
    assert!(matches!(
        TokenKey::from_pem("k", empty),
        Err(TokenKeyError::BadDer { .. })
    ));

    let mut truncated = unhex(P256_SPKI_PREFIX);
    truncated.extend_from_slice(&point[..40]);
    let mut trailing = unhex(P256_SPKI_PREFIX);
    trailing.extend_from_slice(&point);
    trailing.push(0);
    let rsa_oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let p384 = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    let mut compressed = vec![0x02];
    compressed.extend_from_slice(&point[1..33]);
    let mut off_curve = vec![0x04];
    off_curve.extend_from_slice(&[0u8; 64]);
    let mut unused_bits = bits(&point);
    unused_bits[0] = 1;

    let cases = [
        (truncated, "der"),
        (trailing, "der"),
        (vec![0x04, 0x01, 0x00], "der"),
        (spki(&rsa_oid, &[0x05, 0x00], &bits(&point)), "not_ec"),
        (spki(OID_EC_PUBLIC_KEY, &p384, &bits(&point)), "not_p256"),
        (
            spki(OID_EC_PUBLIC_KEY, &[0x30, 0x00], &bits(&point)),
            "not_p256",
        ),
        (spki(OID_EC_PUBLIC_KEY, &p256, &bits(&compressed)), "point"),
        (spki(OID_EC_PUBLIC_KEY, &p256, &bits(&off_curve)), "point"),
        (spki(OID_EC_PUBLIC_KEY, &p256, &bits(&point[..64])), "point"),
        (spki(OID_EC_PUBLIC_KEY, &p256, &unused_bits), "der"),
    ];
    for (i, (der, expected)) in cases.into_iter().enumerate() {
        let err = TokenKey::from_pem("k", &pem_wrap(&der)).unwrap_err();
        assert_eq!(kind(&err), expected, "case {i}: {err}");
    }
}

#[test]
fn non_minimal_der_length_rejected() {
    let kp = key_pair();
    // Outer SEQUENCE length written in long form although it fits in one byte.
    let mut der = vec![0x30, 0x81, 0x59];
    der.extend_from_slice(&unhex(P256_SPKI_PREFIX)[2..]);
    der.extend_from_slice(kp.public_key().as_ref());
    let err = TokenKey::from_pem("k", &pem_wrap(&der)).unwrap_err();
    assert_eq!(
        err,
        TokenKeyError::BadDer {
            detail: "non-minimal DER length"
        }
    );
}

#[test]
fn every_single_byte_mutation_rejected() {
    let (kp, policy) = setup();
    let token = good_token(&kp).into_bytes();
    for i in 0..token.len() {
        for replacement in [b'A', b'_', b'.', 0xff] {
            if token[i] == replacement {
                continue;
            }
            let mut mutated = token.clone();
            mutated[i] = replacement;
            assert!(
                verify_token(&policy, &mutated, NOW).is_err(),
                "byte {i} -> {replacement:#x} accepted"
            );
        }
    }
}
