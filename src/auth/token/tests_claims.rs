//! `verify_token` claim tests: times, issuer and audience, claim presence, types and lengths,
//! plus escaping in log lines and the stable reason labels; fixtures live in `tests_verify.rs`.

use serde_json::json;

use super::tests_verify::{
    AUDIENCE, HOST, ISSUER, LIFETIME, NOW, SKEW, assert_reason, claims, claims_with, reject, setup,
    sign_raw, verify,
};
use super::*;

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
fn every_reason_label_is_stable_and_listed() {
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
    // REASONS (the series created at 0) is exactly the set of labels given.
    let mut given: Vec<&str> = labels.to_vec();
    given.sort_unstable();
    given.dedup();
    let mut listed = TokenRejection::REASONS.to_vec();
    listed.sort_unstable();
    assert_eq!(given, listed);
}

/// Found by fuzzing: an unknown claim holding bytes that are not UTF-8 passed, since serde_json
/// skips such a field without checking it; the payload is not JSON, and the token is refused.
#[test]
fn payload_not_utf8_rejected_even_in_an_ignored_claim() {
    use aws_lc_rs::rand::SystemRandom;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let (kp, policy) = setup();
    let good = claims().to_string();
    let mut payload = good
        .strip_suffix('}')
        .expect("an object")
        .as_bytes()
        .to_vec();
    payload.extend_from_slice(b",\"note\":\"\xa9\xa9\"}");
    let header = br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(&payload)
    );
    let sig = kp.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let err = assert_reason(&policy, &token, "malformed");
    assert!(err.to_string().contains("payload is not UTF-8"), "{err}");
    // The same claim in valid UTF-8 is ignored, as before.
    let fine = format!("{},\"note\":\"\u{a9}\"}}", good.strip_suffix('}').unwrap());
    verify(
        &policy,
        &sign_raw(&kp, r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#, &fine),
    )
    .expect("a valid token with an extra claim");
}
