//! Trusted token-signing keys: [`TokenKey`] and its strict PEM / `SubjectPublicKeyInfo` DER
//! parser for P-256 public keys.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::TokenKeyError;

/// Uncompressed P-256 point: 0x04 ‖ X ‖ Y.
const P256_POINT_LEN: usize = 65;

pub(super) const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
pub(super) const PEM_END: &str = "-----END PUBLIC KEY-----";
/// DER tags used by `SubjectPublicKeyInfo`.
const DER_SEQUENCE: u8 = 0x30;
const DER_OID: u8 = 0x06;
const DER_BIT_STRING: u8 = 0x03;
/// id-ecPublicKey, 1.2.840.10045.2.1 (OID content bytes).
pub(super) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 / secp256r1, 1.2.840.10045.3.1.7 (OID content bytes).
const OID_PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

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
    /// Strict: exactly one PEM block (surrounding whitespace allowed, no PEM headers), DER with
    /// minimal lengths and no trailing bytes, algorithm id-ecPublicKey with the named curve
    /// prime256v1, and an uncompressed point that lies on the curve.
    ///
    /// # Errors
    /// [`TokenKeyError`] saying what is wrong with the key.
    pub fn from_pem(kid: &str, pem: &str) -> Result<Self, TokenKeyError> {
        if kid.is_empty() {
            return Err(TokenKeyError::EmptyKid);
        }
        let der = pem_body(pem)?;
        let point = spki_p256_point(&der)?;
        if ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).is_err() {
            return Err(TokenKeyError::BadPoint {
                detail: "not a point on the curve",
            });
        }
        Ok(Self {
            kid: kid.to_owned(),
            public_key: point.to_vec(),
        })
    }
}

/// Base64-decoded body of a single `PUBLIC KEY` PEM block.
fn pem_body(pem: &str) -> Result<Vec<u8>, TokenKeyError> {
    let inner = pem
        .trim()
        .strip_prefix(PEM_BEGIN)
        .and_then(|rest| rest.strip_suffix(PEM_END))
        .ok_or(TokenKeyError::NotPem)?;
    // The markers must be on lines of their own.
    if !(inner.starts_with('\n') || inner.starts_with("\r\n")) || !inner.ends_with('\n') {
        return Err(TokenKeyError::NotPem);
    }
    let mut b64 = String::with_capacity(inner.len());
    for line in inner.lines() {
        let line = line.trim();
        if line.contains("-----") {
            return Err(TokenKeyError::NotPem);
        }
        b64.push_str(line);
    }
    if b64.is_empty() {
        return Err(TokenKeyError::BadDer {
            detail: "empty PEM body",
        });
    }
    STANDARD.decode(b64).map_err(|_| TokenKeyError::BadBase64)
}

/// The 65-byte point of a P-256 `SubjectPublicKeyInfo`:
/// `SEQUENCE { SEQUENCE { OID id-ecPublicKey, OID prime256v1 }, BIT STRING { 0x00, point } }`.
fn spki_p256_point(der: &[u8]) -> Result<&[u8], TokenKeyError> {
    let (spki, rest) = der_tlv(der, DER_SEQUENCE, "expected SubjectPublicKeyInfo SEQUENCE")?;
    if !rest.is_empty() {
        return Err(TokenKeyError::BadDer {
            detail: "trailing bytes after SubjectPublicKeyInfo",
        });
    }
    let (algorithm, rest) = der_tlv(spki, DER_SEQUENCE, "expected AlgorithmIdentifier SEQUENCE")?;
    let (bits, rest) = der_tlv(rest, DER_BIT_STRING, "expected subjectPublicKey BIT STRING")?;
    if !rest.is_empty() {
        return Err(TokenKeyError::BadDer {
            detail: "trailing bytes inside SubjectPublicKeyInfo",
        });
    }
    let (oid, params) = der_tlv(algorithm, DER_OID, "expected algorithm OID")?;
    if oid != OID_EC_PUBLIC_KEY {
        return Err(TokenKeyError::NotEcKey);
    }
    // Explicit curve parameters (a SEQUENCE) or any other named curve are not P-256 here.
    if params.first() != Some(&DER_OID) {
        return Err(TokenKeyError::NotP256);
    }
    let (curve, rest) = der_tlv(params, DER_OID, "expected named curve OID")?;
    if curve != OID_PRIME256V1 {
        return Err(TokenKeyError::NotP256);
    }
    if !rest.is_empty() {
        return Err(TokenKeyError::BadDer {
            detail: "trailing bytes inside AlgorithmIdentifier",
        });
    }
    let Some((&unused_bits, point)) = bits.split_first() else {
        return Err(TokenKeyError::BadDer {
            detail: "empty BIT STRING",
        });
    };
    if unused_bits != 0 {
        return Err(TokenKeyError::BadDer {
            detail: "BIT STRING has unused bits",
        });
    }
    if point.first() != Some(&0x04) {
        return Err(TokenKeyError::BadPoint {
            detail: "not an uncompressed point (must start with 0x04)",
        });
    }
    if point.len() != P256_POINT_LEN {
        return Err(TokenKeyError::BadPoint {
            detail: "uncompressed P-256 point must be 65 bytes",
        });
    }
    Ok(point)
}

/// Reads one DER TLV with tag `tag` (else `BadDer { detail: expected }`): `(contents, rest)`.
/// Definite, minimal lengths only.
fn der_tlv<'a>(
    input: &'a [u8],
    tag: u8,
    expected: &'static str,
) -> Result<(&'a [u8], &'a [u8]), TokenKeyError> {
    let truncated = TokenKeyError::BadDer {
        detail: "truncated DER",
    };
    let Some((&found, rest)) = input.split_first() else {
        return Err(truncated);
    };
    if found != tag {
        return Err(TokenKeyError::BadDer { detail: expected });
    }
    let Some((&first, rest)) = rest.split_first() else {
        return Err(truncated);
    };
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => match rest.split_first() {
            Some((&len, rest)) if len >= 0x80 => (usize::from(len), rest),
            Some(_) => {
                return Err(TokenKeyError::BadDer {
                    detail: "non-minimal DER length",
                });
            }
            None => return Err(truncated),
        },
        0x82 => match rest.split_first_chunk::<2>() {
            Some((&len, rest)) if u16::from_be_bytes(len) >= 0x100 => {
                (usize::from(u16::from_be_bytes(len)), rest)
            }
            Some(_) => {
                return Err(TokenKeyError::BadDer {
                    detail: "non-minimal DER length",
                });
            }
            None => return Err(truncated),
        },
        _ => {
            return Err(TokenKeyError::BadDer {
                detail: "unsupported DER length form",
            });
        }
    };
    rest.split_at_checked(len).ok_or(truncated)
}
