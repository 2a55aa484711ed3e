//! Trusted token-signing keys: [`TokenKey`], loaded from a PEM `PUBLIC KEY` block. The PEM
//! armour is decoded by rustls-pki-types and the `SubjectPublicKeyInfo` parsed and checked
//! (algorithm, curve, point on the curve, strict DER) by aws-lc-rs; this file only insists on
//! the one encoding a P-256 key has and says what was wrong.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ECDSA_P521_SHA512_FIXED, ED25519,
    ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, VerificationAlgorithm,
};
use rustls::pki_types::SubjectPublicKeyInfoDer;
use rustls::pki_types::pem::{self, PemObject as _};

use super::TokenKeyError;

pub(super) const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
pub(super) const PEM_END: &str = "-----END PUBLIC KEY-----";

/// DER of a P-256 `SubjectPublicKeyInfo` up to its point: `SEQUENCE { SEQUENCE { OID
/// id-ecPublicKey, OID prime256v1 }, BIT STRING { 0 unused bits, ...` — every key with an
/// uncompressed point starts so, and nothing else may follow the 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Uncompressed P-256 point: 0x04 ‖ X ‖ Y.
const P256_POINT_LEN: usize = 65;
/// SEC 1's tag of an uncompressed point. aws-lc-rs also accepts X9.62's "hybrid" form (0x06 /
/// 0x07 ‖ X ‖ Y), the same point written another way: refused here (found by fuzzing).
const UNCOMPRESSED: u8 = 0x04;

/// One trusted token-signing key of a remote (tenant); several per remote allow rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenKey {
    /// Key id matched against the token header's `kid`.
    pub kid: String,
    /// Uncompressed P-256 point (65 bytes, starting with 0x04).
    pub public_key: Vec<u8>,
}

impl TokenKey {
    /// Parse from a PEM `-----BEGIN PUBLIC KEY-----` (`SubjectPublicKeyInfo`, P-256) string.
    ///
    /// Exactly one `PUBLIC KEY` block (lines may be indented, as in a TOML string); its DER
    /// must be a P-256 key with the named curve and an uncompressed point on the curve.
    ///
    /// # Errors
    /// [`TokenKeyError`] saying what is wrong with the key.
    pub fn from_pem(kid: &str, pem: &str) -> Result<Self, TokenKeyError> {
        if kid.is_empty() {
            return Err(TokenKeyError::EmptyKid);
        }
        // pki-types wants the markers at the start of a line.
        let text: Vec<&str> = pem.lines().map(str::trim).collect();
        let text = text.join("\n");
        let mut blocks = SubjectPublicKeyInfoDer::pem_slice_iter(text.as_bytes());
        let der = match (blocks.next(), blocks.next()) {
            (Some(Ok(der)), None) => der,
            (Some(Err(pem::Error::Base64Decode(_))), _) => return Err(TokenKeyError::BadBase64),
            _ => return Err(TokenKeyError::NotPem),
        };
        Self::from_spki_der(kid, &der)
    }

    /// Parse from the DER of a P-256 `SubjectPublicKeyInfo` (what a `PUBLIC KEY` PEM holds).
    ///
    /// # Errors
    /// [`TokenKeyError`] saying what is wrong with the key.
    pub(crate) fn from_spki_der(kid: &str, der: &[u8]) -> Result<Self, TokenKeyError> {
        if kid.is_empty() {
            return Err(TokenKeyError::EmptyKid);
        }
        // aws-lc-rs also takes a bare point; a `PUBLIC KEY` holds a SEQUENCE.
        let parsed = der
            .first()
            .filter(|tag| **tag == 0x30)
            .and_then(|_| ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, der).ok());
        let Some(_valid) = parsed else {
            return Err(refusal(der));
        };
        match der.strip_prefix(&P256_SPKI_PREFIX[..]) {
            Some(point) if point.len() == P256_POINT_LEN && point[0] == UNCOMPRESSED => Ok(Self {
                kid: kid.to_owned(),
                public_key: point.to_vec(),
            }),
            // A valid key in another encoding: a compressed or hybrid point, or bytes after
            // the key.
            _ => Err(TokenKeyError::BadPoint {
                detail: "expected an uncompressed point (0x04 ‖ X ‖ Y) and nothing after it",
            }),
        }
    }
}

/// Why `der` is no P-256 key: another kind of key, or no valid key at all.
fn refusal(der: &[u8]) -> TokenKeyError {
    let is = |alg: &'static dyn VerificationAlgorithm| {
        der.first() == Some(&0x30) && ParsedPublicKey::new(alg, der).is_ok()
    };
    if is(&ECDSA_P384_SHA384_FIXED) || is(&ECDSA_P521_SHA512_FIXED) {
        TokenKeyError::NotP256
    } else if is(&RSA_PKCS1_2048_8192_SHA256) || is(&ED25519) {
        TokenKeyError::NotEcKey
    } else {
        TokenKeyError::BadDer {
            detail: "not a valid P-256 SubjectPublicKeyInfo (truncated or malformed DER, \
                     explicit curve parameters, or a point not on the curve)",
        }
    }
}
