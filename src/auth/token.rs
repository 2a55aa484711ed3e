//! Front B access tokens: compact ES256 JWTs (pure: no I/O, no clock).
//!
//! An installed client helper opens TLS to the edge and, before any SSH bytes, sends one compact
//! JWS (`header.payload.signature`, RFC 7515/7519) signed with ES256 by the remote's (tenant's)
//! token-signing service. [`verify_token`] checks it against the remote's [`TokenPolicy`]; on
//! success the edge passes the raw SSH stream through to the workload named by the `host` claim.
//! On failure a [`TokenRejection`] says why: its `Display` is a precise operator log line (never
//! sent to the client) and [`TokenRejection::reason`] is a bounded metrics label.
//!
//! # Protocol
//!
//! Header (JOSE):
//!
//! | field | rule |
//! | --- | --- |
//! | `alg` | exactly `"ES256"` (ECDSA P-256 / SHA-256, signature is the 64-byte `r‖s`) |
//! | `typ` | optional; if present exactly `"JWT"` |
//! | `kid` | required; names one of the remote's configured [`TokenKey`]s (several allow rotation) |
//! | `jku`, `jwk`, `x5u`, `x5c`, `crit` | must be absent: keys come only from configuration, and no extension is understood |
//!
//! Other header fields are ignored. Claims (payload), all checked after the signature:
//!
//! | claim | type | meaning |
//! | --- | --- | --- |
//! | `iss` | string | issuer; must equal [`TokenPolicy::issuer`] |
//! | `aud` | string or array of strings | audiences; must contain [`TokenPolicy::audience`] |
//! | `sub` | string, 1–256 bytes | who the token was issued to (for audit) |
//! | `jti` | string, 1–256 bytes | token id (for audit and revocation) |
//! | `host` | string, 1–253 bytes | workload host the token opens, e.g. `training-job-abc1234-0.ssh.baseten.co`; the caller parses it with the SNI host-name parser |
//! | `iat` | integer seconds since the epoch | issue time; not in the future beyond the skew |
//! | `exp` | integer seconds since the epoch | expiry; `exp - iat` at most [`TokenPolicy::max_lifetime_secs`] |
//! | `nbf` | optional integer seconds since the epoch | not valid before |
//!
//! Other claims are ignored. Times are non-negative JSON integers (no fractions, no exponents);
//! a present claim must have its type (`null` is not "absent").
//!
//! # Verification order
//!
//! The first failure wins: size (`too_long`); ASCII, three unpadded base64url parts, header a
//! JSON object (`malformed`); `alg` (`alg_none`, `alg_not_allowed`); `typ`
//! (`header_not_allowed`); `kid` (`unknown_kid`); key-bearing or critical header fields
//! (`header_not_allowed`); the signature over `header_b64.payload_b64` (`bad_signature`). Only
//! then is the payload parsed (`malformed` if it is not a JSON object, `bad_claims` naming the
//! missing or mistyped claim) and checked: `iss` (`wrong_issuer`), `aud` (`wrong_audience`),
//! `nbf`/`iat` (`not_yet_valid`), `exp` (`expired`), `exp - iat` (`lifetime_too_long`), and the
//! lengths of `host`, `sub`, `jti` (`bad_claims`).
//!
//! JSON objects are parsed strictly: a repeated header field or claim is `malformed`, so two
//! parsers can never disagree about which value counted.
//!
//! Token-controlled strings are escaped to printable ASCII and capped at 128 characters before
//! they reach a log line, so a hostile token cannot forge log records or flood the log.

use std::fmt::Write as _;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, ParsedPublicKey,
    UnparsedPublicKey,
};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use serde_json::Value;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest `host` claim, in bytes (a DNS name).
pub const MAX_HOST_LEN: usize = 253;
/// Longest `sub` claim, in bytes.
pub const MAX_SUB_LEN: usize = 256;
/// Longest `jti` claim, in bytes.
pub const MAX_JTI_LEN: usize = 256;
/// The only accepted JWS algorithm.
pub const ALG_ES256: &str = "ES256";
/// The only accepted `typ` header value.
pub const TYP_JWT: &str = "JWT";

/// Longest token-controlled text (in output characters) copied into a log line.
const MAX_LOGGED_CHARS: usize = 128;
/// Most audiences listed in a log line.
const MAX_LOGGED_AUDIENCES: usize = 16;
/// Uncompressed P-256 point: 0x04 ‖ X ‖ Y.
const P256_POINT_LEN: usize = 65;
/// ES256 signature: r ‖ s, 32 bytes each.
const ES256_SIGNATURE_LEN: usize = 64;

const PEM_BEGIN: &str = "-----BEGIN PUBLIC KEY-----";
const PEM_END: &str = "-----END PUBLIC KEY-----";
/// DER tags used by `SubjectPublicKeyInfo`.
const DER_SEQUENCE: u8 = 0x30;
const DER_OID: u8 = 0x06;
const DER_BIT_STRING: u8 = 0x03;
/// id-ecPublicKey, 1.2.840.10045.2.1 (OID content bytes).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
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

/// Why a configured token key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenKeyError {
    #[error("token key id is empty")]
    EmptyKid,
    #[error("not a PEM \"PUBLIC KEY\" block ({PEM_BEGIN} ... {PEM_END})")]
    NotPem,
    #[error("PEM body is not valid base64")]
    BadBase64,
    #[error("malformed SubjectPublicKeyInfo DER: {detail}")]
    BadDer { detail: &'static str },
    #[error("public key algorithm is not id-ecPublicKey (1.2.840.10045.2.1)")]
    NotEcKey,
    #[error("EC public key curve is not P-256 (prime256v1, 1.2.840.10045.3.1.7)")]
    NotP256,
    #[error("bad P-256 public key point: {detail}")]
    BadPoint { detail: &'static str },
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

/// Per-remote (tenant) token policy, built from config once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Trusted signing keys, looked up by `kid` (the first key with a matching id is used).
    pub keys: Vec<TokenKey>,
    /// Required `iss`.
    pub issuer: String,
    /// Required member of `aud`.
    pub audience: String,
    /// Tolerance for `nbf`, `iat` and `exp` against the edge's clock.
    pub max_clock_skew_secs: u64,
    /// Upper bound on `exp - iat` (e.g. 24 h).
    pub max_lifetime_secs: u64,
}

/// The `aud` claim: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// All audiences, in token order.
    #[must_use]
    pub fn as_slice(&self) -> &[String] {
        match self {
            Self::One(aud) => std::slice::from_ref(aud),
            Self::Many(auds) => auds,
        }
    }

    /// Whether `audience` is one of them (exact, case-sensitive match).
    #[must_use]
    pub fn contains(&self, audience: &str) -> bool {
        self.as_slice().iter().any(|a| a == audience)
    }
}

/// Claims the edge uses: the protocol's claim set (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TokenClaims {
    /// Issuer.
    pub iss: String,
    /// Audience(s).
    pub aud: Audience,
    /// Who the token was issued to.
    pub sub: String,
    /// Token id.
    pub jti: String,
    /// The workload host the token opens, e.g. "training-job-abc1234-0.ssh.baseten.co" (parsed by
    /// the caller with the same host-name parser as SNI).
    pub host: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Not valid before (seconds since the epoch).
    #[serde(default)]
    pub nbf: Option<u64>,
}

/// Why a token was refused. `Display` is an operator log line; never send it to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("token is {len} bytes, over the {max}-byte limit")]
    TooLong { len: usize, max: usize },

    /// Structure, base64 or JSON error; `detail` is already escaped for the log.
    #[error("malformed token: {detail}")]
    Malformed { detail: String },

    #[error("unsigned token refused (header alg {})", quoted(.alg))]
    AlgNone { alg: String },

    #[error("token alg {} not allowed (only ES256 is accepted)", quoted(.alg))]
    AlgNotAllowed { alg: String },

    #[error("token header has no alg (only ES256 is accepted)")]
    MissingAlg,

    #[error("token header typ {} is not \"JWT\"", quoted(.typ))]
    TypNotJwt { typ: String },

    #[error("token header has no kid")]
    MissingKid,

    #[error("token kid {} names no configured key", quoted(.kid))]
    UnknownKid { kid: String },

    #[error("token header field {field:?} not allowed (keys come only from config; no extensions)")]
    HeaderNotAllowed { field: &'static str },

    #[error(
        "token signature is {len} bytes, ES256 needs {ES256_SIGNATURE_LEN} (kid {})",
        quoted(.kid)
    )]
    SignatureLength { kid: String, len: usize },

    #[error("token signature does not verify against key {}", quoted(.kid))]
    BadSignature { kid: String },

    /// A claim is missing, mistyped, empty or too long; `problem` is already escaped for the log.
    #[error("token claim {claim:?} {problem}")]
    BadClaims {
        claim: &'static str,
        problem: String,
    },

    #[error("token issuer {} is not {}", quoted(.iss), quoted(.expected))]
    WrongIssuer { iss: String, expected: String },

    #[error(
        "token audience {} does not include {}",
        audience_list(.aud),
        quoted(.expected)
    )]
    WrongAudience { aud: Vec<String>, expected: String },

    #[error("token not yet valid: {claim} {at} (now {now}, skew {skew_secs}s)")]
    NotYetValid {
        claim: &'static str,
        at: u64,
        now: u64,
        skew_secs: u64,
    },

    #[error("token expired at {exp} (now {now}, skew {skew_secs}s)")]
    Expired { exp: u64, now: u64, skew_secs: u64 },

    #[error("token lifetime {lifetime_secs}s (exp - iat) exceeds the {max_secs}s limit")]
    LifetimeTooLong { lifetime_secs: u64, max_secs: u64 },
}

impl TokenRejection {
    /// Stable `snake_case` label for metrics (bounded cardinality).
    #[must_use]
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLong { .. } => "too_long",
            Self::Malformed { .. } => "malformed",
            Self::AlgNone { .. } => "alg_none",
            Self::AlgNotAllowed { .. } | Self::MissingAlg => "alg_not_allowed",
            Self::TypNotJwt { .. } | Self::HeaderNotAllowed { .. } => "header_not_allowed",
            Self::MissingKid | Self::UnknownKid { .. } => "unknown_kid",
            Self::SignatureLength { .. } | Self::BadSignature { .. } => "bad_signature",
            Self::BadClaims { .. } => "bad_claims",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::Expired { .. } => "expired",
            Self::LifetimeTooLong { .. } => "lifetime_too_long",
        }
    }
}

/// Why [`sign_token`] could not build a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("signing key is not ECDSA P-256 SHA-256 in fixed (r||s) form")]
    WrongKeyAlgorithm,
    #[error("token key id is empty")]
    EmptyKid,
    #[error("token claims must be a JSON object")]
    ClaimsNotObject,
    #[error("could not serialize token JSON: {detail}")]
    Json { detail: String },
    #[error("ECDSA signing failed")]
    Signing,
    #[error("signed token is {len} bytes, over the {max}-byte limit verifiers accept")]
    TooLong { len: usize, max: usize },
}

/// Verify a compact ES256 JWT against the remote's policy at `now_unix` (seconds since the epoch).
///
/// The signature is checked before any claim is looked at; see the module docs for the order.
///
/// # Errors
/// The first [`TokenRejection`] that applies.
pub fn verify_token(
    policy: &TokenPolicy,
    token: &[u8],
    now_unix: u64,
) -> Result<TokenClaims, TokenRejection> {
    let parts = split_token(token)?;
    let header: RawHeader = parse_json_object(&parts.header, "header")?;
    let key = check_header(policy, header)?;
    verify_signature(key, parts.signing_input, &parts.signature)?;
    let raw: RawClaims = parse_json_object(&parts.payload, "payload")?;
    let claims = claims_from_raw(raw)?;
    check_claims(policy, &claims, now_unix)?;
    Ok(claims)
}

/// For tests and the (later) signing service: build a compact ES256 JWT with header
/// `{"alg":"ES256","kid":kid,"typ":"JWT"}` and `claims` (a JSON object) as payload.
///
/// # Errors
/// [`TokenError`] if the key is not P-256 fixed-form, `kid` is empty, `claims` is not an object,
/// signing fails, or the result would exceed [`MAX_TOKEN_LEN`].
pub fn sign_token(key: &EcdsaKeyPair, kid: &str, claims: &Value) -> Result<String, TokenError> {
    if *key.algorithm() != ECDSA_P256_SHA256_FIXED_SIGNING {
        return Err(TokenError::WrongKeyAlgorithm);
    }
    if kid.is_empty() {
        return Err(TokenError::EmptyKid);
    }
    if !claims.is_object() {
        return Err(TokenError::ClaimsNotObject);
    }
    let header = serde_json::json!({ "alg": ALG_ES256, "typ": TYP_JWT, "kid": kid });
    let header = json_bytes(&header)?;
    let payload = json_bytes(claims)?;
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let signature = key
        .sign(&SystemRandom::new(), token.as_bytes())
        .map_err(|_| TokenError::Signing)?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    Ok(token)
}

fn json_bytes(value: &Value) -> Result<Vec<u8>, TokenError> {
    serde_json::to_vec(value).map_err(|e| TokenError::Json {
        detail: e.to_string(),
    })
}

/// The three decoded parts of a compact JWS, plus the signed text.
struct Parts<'a> {
    /// `header_b64.payload_b64`, exactly as received.
    signing_input: &'a [u8],
    header: Vec<u8>,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn malformed(detail: String) -> TokenRejection {
    TokenRejection::Malformed { detail }
}

fn split_token(token: &[u8]) -> Result<Parts<'_>, TokenRejection> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenRejection::TooLong {
            len: token.len(),
            max: MAX_TOKEN_LEN,
        });
    }
    if let Some((offset, byte)) = token.iter().enumerate().find(|(_, b)| !b.is_ascii()) {
        return Err(malformed(format!(
            "byte 0x{byte:02x} at offset {offset} is not ASCII"
        )));
    }
    let count = token.split(|&b| b == b'.').count();
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(format!(
            "expected 3 dot-separated parts, found {count}"
        )));
    };
    let signing_input = token
        .get(..header.len() + 1 + payload.len())
        .ok_or_else(|| malformed("token shorter than its parts".to_owned()))?;
    Ok(Parts {
        signing_input,
        header: decode_part(header, "header")?,
        payload: decode_part(payload, "payload")?,
        signature: decode_part(signature, "signature")?,
    })
}

fn decode_part(part: &[u8], name: &str) -> Result<Vec<u8>, TokenRejection> {
    URL_SAFE_NO_PAD.decode(part).map_err(|e| {
        malformed(format!(
            "{name} is not unpadded base64url ({})",
            clean(&e.to_string())
        ))
    })
}

/// Parses a JSON object strictly: the top level must be an object (not an array standing in for
/// a struct), known fields may not repeat, and nothing may follow it.
fn parse_json_object<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    name: &str,
) -> Result<T, TokenRejection> {
    let first = bytes
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(malformed(format!("{name} is not a JSON object")));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        malformed(format!(
            "{name} is not valid JSON ({})",
            clean(&e.to_string())
        ))
    })
}

/// `Some(value)` for a present field, `null` included (absent fields default to `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// `true` for a present field, whatever its value.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(d).map(|_| true)
}

/// The JOSE header fields the edge looks at; others are ignored.
#[derive(Deserialize)]
struct RawHeader {
    #[serde(default, deserialize_with = "present")]
    alg: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    typ: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    kid: Option<Value>,
    #[serde(default, deserialize_with = "flag")]
    jku: bool,
    #[serde(default, deserialize_with = "flag")]
    jwk: bool,
    #[serde(default, deserialize_with = "flag")]
    x5u: bool,
    #[serde(default, deserialize_with = "flag")]
    x5c: bool,
    #[serde(default, deserialize_with = "flag")]
    crit: bool,
}

/// alg, typ, kid and forbidden fields, in that order; returns the key named by `kid`.
fn check_header(policy: &TokenPolicy, header: RawHeader) -> Result<&TokenKey, TokenRejection> {
    let alg = match header.alg {
        None => return Err(TokenRejection::MissingAlg),
        Some(Value::String(alg)) => alg,
        Some(other) => {
            return Err(malformed(format!(
                "header alg must be a string, found {}",
                json_type(&other)
            )));
        }
    };
    if alg != ALG_ES256 {
        return Err(if alg.eq_ignore_ascii_case("none") {
            TokenRejection::AlgNone { alg }
        } else {
            TokenRejection::AlgNotAllowed { alg }
        });
    }
    match header.typ {
        None => {}
        Some(Value::String(typ)) if typ == TYP_JWT => {}
        Some(Value::String(typ)) => return Err(TokenRejection::TypNotJwt { typ }),
        Some(other) => {
            return Err(malformed(format!(
                "header typ must be a string, found {}",
                json_type(&other)
            )));
        }
    }
    let kid = match header.kid {
        None => return Err(TokenRejection::MissingKid),
        Some(Value::String(kid)) if kid.is_empty() => return Err(TokenRejection::MissingKid),
        Some(Value::String(kid)) => kid,
        Some(other) => {
            return Err(malformed(format!(
                "header kid must be a string, found {}",
                json_type(&other)
            )));
        }
    };
    let Some(key) = policy.keys.iter().find(|k| k.kid == kid) else {
        return Err(TokenRejection::UnknownKid { kid });
    };
    for (present, field) in [
        (header.jku, "jku"),
        (header.jwk, "jwk"),
        (header.x5u, "x5u"),
        (header.x5c, "x5c"),
        (header.crit, "crit"),
    ] {
        if present {
            return Err(TokenRejection::HeaderNotAllowed { field });
        }
    }
    Ok(key)
}

fn verify_signature(
    key: &TokenKey,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), TokenRejection> {
    if signature.len() != ES256_SIGNATURE_LEN {
        return Err(TokenRejection::SignatureLength {
            kid: key.kid.clone(),
            len: signature.len(),
        });
    }
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.public_key)
        .verify(signing_input, signature)
        .map_err(|_| TokenRejection::BadSignature {
            kid: key.kid.clone(),
        })
}

/// The claims the edge looks at, each kept raw so a bad one can be named precisely.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default, deserialize_with = "present")]
    iss: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    aud: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    sub: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    jti: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    host: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    iat: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    exp: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    nbf: Option<Value>,
}

fn bad_claim(claim: &'static str, problem: impl Into<String>) -> TokenRejection {
    TokenRejection::BadClaims {
        claim,
        problem: problem.into(),
    }
}

fn string_claim(value: Option<Value>, claim: &'static str) -> Result<String, TokenRejection> {
    match value {
        None => Err(bad_claim(claim, "is missing")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(bad_claim(
            claim,
            format!("must be a string, found {}", json_type(&other)),
        )),
    }
}

fn time_claim(value: Option<Value>, claim: &'static str) -> Result<Option<u64>, TokenRejection> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| {
            bad_claim(
                claim,
                format!(
                    "must be a non-negative integer (seconds since the epoch), found {}",
                    clean(&n.to_string())
                ),
            )
        }),
        Some(other) => Err(bad_claim(
            claim,
            format!(
                "must be an integer (seconds since the epoch), found {}",
                json_type(&other)
            ),
        )),
    }
}

fn required_time_claim(value: Option<Value>, claim: &'static str) -> Result<u64, TokenRejection> {
    time_claim(value, claim)?.ok_or_else(|| bad_claim(claim, "is missing"))
}

fn audience_claim(value: Option<Value>) -> Result<Audience, TokenRejection> {
    match value {
        None => Err(bad_claim("aud", "is missing")),
        Some(Value::String(aud)) => Ok(Audience::One(aud)),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(aud) => Ok(aud),
                other => Err(bad_claim(
                    "aud",
                    format!(
                        "array element {i} must be a string, found {}",
                        json_type(&other)
                    ),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Audience::Many),
        Some(other) => Err(bad_claim(
            "aud",
            format!(
                "must be a string or an array of strings, found {}",
                json_type(&other)
            ),
        )),
    }
}

/// Presence and types of every claim, in a fixed order.
fn claims_from_raw(raw: RawClaims) -> Result<TokenClaims, TokenRejection> {
    Ok(TokenClaims {
        iss: string_claim(raw.iss, "iss")?,
        aud: audience_claim(raw.aud)?,
        sub: string_claim(raw.sub, "sub")?,
        jti: string_claim(raw.jti, "jti")?,
        host: string_claim(raw.host, "host")?,
        iat: required_time_claim(raw.iat, "iat")?,
        exp: required_time_claim(raw.exp, "exp")?,
        nbf: time_claim(raw.nbf, "nbf")?,
    })
}

fn check_claims(
    policy: &TokenPolicy,
    claims: &TokenClaims,
    now: u64,
) -> Result<(), TokenRejection> {
    if claims.iss != policy.issuer {
        return Err(TokenRejection::WrongIssuer {
            iss: claims.iss.clone(),
            expected: policy.issuer.clone(),
        });
    }
    if !claims.aud.contains(&policy.audience) {
        return Err(TokenRejection::WrongAudience {
            aud: claims.aud.as_slice().to_vec(),
            expected: policy.audience.clone(),
        });
    }
    let skew_secs = policy.max_clock_skew_secs;
    let latest_start = now.saturating_add(skew_secs);
    for (claim, at) in [("nbf", claims.nbf), ("iat", Some(claims.iat))] {
        if let Some(at) = at
            && at > latest_start
        {
            return Err(TokenRejection::NotYetValid {
                claim,
                at,
                now,
                skew_secs,
            });
        }
    }
    if now >= claims.exp.saturating_add(skew_secs) {
        return Err(TokenRejection::Expired {
            exp: claims.exp,
            now,
            skew_secs,
        });
    }
    let Some(lifetime_secs) = claims.exp.checked_sub(claims.iat) else {
        return Err(bad_claim(
            "exp",
            format!("{} is earlier than iat {}", claims.exp, claims.iat),
        ));
    };
    if lifetime_secs > policy.max_lifetime_secs {
        return Err(TokenRejection::LifetimeTooLong {
            lifetime_secs,
            max_secs: policy.max_lifetime_secs,
        });
    }
    for (claim, value, max) in [
        ("host", &claims.host, MAX_HOST_LEN),
        ("sub", &claims.sub, MAX_SUB_LEN),
        ("jti", &claims.jti, MAX_JTI_LEN),
    ] {
        if value.is_empty() {
            return Err(bad_claim(claim, "is empty"));
        }
        if value.len() > max {
            return Err(bad_claim(
                claim,
                format!("is {} bytes, over the {max}-byte limit", value.len()),
            ));
        }
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Appends `s` escaped to printable ASCII, using at most `max` output characters; returns
/// whether it had to stop early.
fn push_escaped(out: &mut String, s: &str, max: usize) -> bool {
    let mut used = 0;
    let mut buf = String::new();
    for c in s.chars() {
        buf.clear();
        match c {
            '"' => buf.push_str("\\\""),
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            '\t' => buf.push_str("\\t"),
            ' '..='~' => buf.push(c),
            _ => {
                let _ = write!(buf, "\\u{{{:x}}}", u32::from(c));
            }
        }
        used += buf.len();
        if used > max {
            return true;
        }
        out.push_str(&buf);
    }
    false
}

/// Quoted, escaped (printable ASCII only), length-capped rendering of a token-provided string.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED_CHARS) + 5);
    out.push('"');
    let cut = push_escaped(&mut out, s, MAX_LOGGED_CHARS);
    out.push('"');
    if cut {
        out.push_str("...");
    }
    out
}

/// Unquoted variant of [`quoted`] for library error messages that may echo token bytes.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOGGED_CHARS) + 3);
    if push_escaped(&mut out, s, MAX_LOGGED_CHARS) {
        out.push_str("...");
    }
    out
}

fn audience_list(auds: &[String]) -> String {
    let mut out = String::from("[");
    for (i, aud) in auds.iter().take(MAX_LOGGED_AUDIENCES).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&quoted(aud));
    }
    if let Some(more) = auds.len().checked_sub(MAX_LOGGED_AUDIENCES)
        && more > 0
    {
        let _ = write!(out, ", ... ({more} more)");
    }
    out.push(']');
    out
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
