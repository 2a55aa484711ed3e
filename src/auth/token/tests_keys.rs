//! `sign_token` input checks and `TokenKey::from_pem` (PEM armor, SPKI DER, P-256 point) tests;
//! fixtures live in `tests_verify.rs`.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use serde_json::json;

use super::tests_verify::{
    P256_SPKI_PREFIX, claims, good_token, key_pair, pem_for, pem_wrap, policy, token_key, unhex,
    verify,
};
use super::*;

/// id-ecPublicKey, 1.2.840.10045.2.1 (OID content bytes).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

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
    // Real keys of other kinds, as their SubjectPublicKeyInfo DER.
    let real_p384 = {
        let kp = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let real_rsa = {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let real_ed25519 = {
        let kp = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        AsDer::<PublicKeyX509Der>::as_der(kp.public_key())
            .unwrap()
            .as_ref()
            .to_vec()
    };
    let mut compressed = vec![0x02];
    compressed.extend_from_slice(&point[1..33]);
    // X9.62's hybrid form of the same point: 0x06 | (Y's parity), then X and Y.
    let mut hybrid = point.clone();
    hybrid[0] = 0x06 | (point[64] & 1);
    let mut hybrid_wrong_parity = hybrid.clone();
    hybrid_wrong_parity[0] ^= 1;
    let mut off_curve = vec![0x04];
    off_curve.extend_from_slice(&[0u8; 64]);
    let mut unused_bits = bits(&point);
    unused_bits[0] = 1;

    let cases = [
        (truncated, "der"),
        (trailing, "point"),
        (vec![0x04, 0x01, 0x00], "der"),
        // A bare point is no SubjectPublicKeyInfo (aws-lc-rs alone would take it).
        (point.clone(), "der"),
        (real_rsa, "not_ec"),
        (real_ed25519, "not_ec"),
        (real_p384, "not_p256"),
        // Another algorithm's OID, or a curve's OID, over a P-256 point: not a valid key.
        (spki(&rsa_oid, &[0x05, 0x00], &bits(&point)), "der"),
        (spki(OID_EC_PUBLIC_KEY, &p384, &bits(&point)), "der"),
        // Explicit curve parameters instead of the named curve.
        (spki(OID_EC_PUBLIC_KEY, &[0x30, 0x00], &bits(&point)), "der"),
        // A valid key in another encoding.
        (spki(OID_EC_PUBLIC_KEY, &p256, &bits(&compressed)), "point"),
        // aws-lc-rs takes the hybrid form; only 0x04 is accepted (a fuzzing find).
        (spki(OID_EC_PUBLIC_KEY, &p256, &bits(&hybrid)), "point"),
        (spki(OID_EC_PUBLIC_KEY, &p256, &bits(&off_curve)), "der"),
        (spki(OID_EC_PUBLIC_KEY, &p256, &bits(&point[..64])), "der"),
        (spki(OID_EC_PUBLIC_KEY, &p256, &unused_bits), "der"),
        (Vec::new(), "der"),
    ];
    for (i, (der, expected)) in cases.into_iter().enumerate() {
        let err = TokenKey::from_pem("k", &pem_wrap(&der)).unwrap_err();
        assert_eq!(kind(&err), expected, "case {i}: {err}");
    }
    let wrong = spki(OID_EC_PUBLIC_KEY, &p256, &bits(&hybrid_wrong_parity));
    assert!(TokenKey::from_pem("k", &pem_wrap(&wrong)).is_err());
}

#[test]
fn non_minimal_der_length_rejected() {
    let kp = key_pair();
    // Outer SEQUENCE length written in long form although it fits in one byte.
    let mut der = vec![0x30, 0x81, 0x59];
    der.extend_from_slice(&unhex(P256_SPKI_PREFIX)[2..]);
    der.extend_from_slice(kp.public_key().as_ref());
    let err = TokenKey::from_pem("k", &pem_wrap(&der)).unwrap_err();
    assert_eq!(kind(&err), "der", "{err}");
}

#[test]
fn der_entry_point_matches_pem() {
    let kp = key_pair();
    let mut der = unhex(P256_SPKI_PREFIX);
    der.extend_from_slice(kp.public_key().as_ref());
    assert_eq!(
        TokenKey::from_spki_der("k1", &der).unwrap(),
        token_key("k1", &kp)
    );
    assert_eq!(
        TokenKey::from_spki_der("", &der),
        Err(TokenKeyError::EmptyKid)
    );
}

#[test]
fn indented_pem_and_explanatory_text_are_accepted() {
    let kp = key_pair();
    // As a TOML multi-line string might hold it.
    let indented: String = pem_for(&kp).lines().map(|l| format!("    {l}\n")).collect();
    assert_eq!(
        TokenKey::from_pem("k1", &indented).unwrap(),
        token_key("k1", &kp)
    );
    // RFC 7468 allows text outside the block.
    let commented = format!("tenant-a signing key\n{}", pem_for(&kp));
    assert_eq!(
        TokenKey::from_pem("k1", &commented).unwrap(),
        token_key("k1", &kp)
    );
}

#[test]
fn errors_say_what_was_expected() {
    for e in [
        TokenKeyError::NotPem,
        TokenKeyError::BadBase64,
        TokenKeyError::NotEcKey,
        TokenKeyError::NotP256,
        TokenKeyError::BadDer { detail: "x" },
        TokenKeyError::BadPoint { detail: "x" },
    ] {
        assert!(e.to_string().contains("P-256 EC public key"), "{e}");
    }
}
