//! `verify_token` tests: acceptance, key rotation, signature, algorithms, header fields and
//! token structure. The shared fixtures (keys, policies, claims, token builders) live here and
//! are used by `tests_claims.rs` and `tests_keys.rs` too.

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::*;

pub(super) const NOW: u64 = 1_700_000_000;
pub(super) const SKEW: u64 = 60;
pub(super) const LIFETIME: u64 = 24 * 3600;
pub(super) const ISSUER: &str = "https://tokens.example.test";
pub(super) const AUDIENCE: &str = "ssh-edge";
pub(super) const HOST: &str = "training-job-abc1234-0.ssh.baseten.co";
/// `SubjectPublicKeyInfo` DER prefix for an uncompressed P-256 point.
pub(super) const P256_SPKI_PREFIX: &str = "3059301306072a8648ce3d020106082a8648ce3d030107034200";

pub(super) fn key_pair() -> EcdsaKeyPair {
    EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap()
}

pub(super) fn token_key(kid: &str, kp: &EcdsaKeyPair) -> TokenKey {
    TokenKey {
        kid: kid.to_owned(),
        public_key: kp.public_key().as_ref().to_vec(),
    }
}

pub(super) fn policy(keys: Vec<TokenKey>) -> TokenPolicy {
    TokenPolicy {
        keys,
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        max_clock_skew_secs: SKEW,
        max_lifetime_secs: LIFETIME,
    }
}

/// One key "k1" and a policy trusting it.
pub(super) fn setup() -> (EcdsaKeyPair, TokenPolicy) {
    let kp = key_pair();
    let policy = policy(vec![token_key("k1", &kp)]);
    (kp, policy)
}

pub(super) fn claims() -> Value {
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
pub(super) fn claims_with(field: &str, value: Option<Value>) -> Value {
    let mut c = claims();
    let obj = c.as_object_mut().unwrap();
    match value {
        Some(v) => obj.insert(field.to_owned(), v),
        None => obj.remove(field),
    };
    c
}

pub(super) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token with an arbitrary header, ES256-signed by `kp` over the exact JSON texts given.
pub(super) fn sign_raw(kp: &EcdsaKeyPair, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", b64(sig.as_ref()))
}

pub(super) fn sign_header(kp: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
    sign_raw(kp, &header.to_string(), &claims.to_string())
}

pub(super) fn good_token(kp: &EcdsaKeyPair) -> String {
    sign_token(kp, "k1", &claims()).unwrap()
}

pub(super) fn verify(policy: &TokenPolicy, token: &str) -> Result<TokenClaims, TokenRejection> {
    verify_token(policy, token.as_bytes(), NOW)
}

pub(super) fn reject(policy: &TokenPolicy, token: &str) -> TokenRejection {
    verify(policy, token).unwrap_err()
}

pub(super) fn assert_reason(policy: &TokenPolicy, token: &str, reason: &str) -> TokenRejection {
    let err = reject(policy, token);
    assert_eq!(err.reason(), reason, "{err}");
    err
}

pub(super) fn pem_for(kp: &EcdsaKeyPair) -> String {
    let mut der = unhex(P256_SPKI_PREFIX);
    der.extend_from_slice(kp.public_key().as_ref());
    pem_wrap(&der)
}

pub(super) fn pem_wrap(der: &[u8]) -> String {
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
pub(super) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub(super) fn part(token: &str, i: usize) -> String {
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
