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
//! Token-controlled strings are escaped to printable ASCII and capped at 128 characters (see
//! [`crate::text`]) before they reach a log line, so a hostile token cannot forge log records or
//! flood the log.
//!
//! # Layout
//! - this file: the public types, constants, [`verify_token`] and [`sign_token`];
//! - `verify`: the verification steps (structure, JSON, header, signature, claims);
//! - `key`: [`TokenKey`] and its PEM / `SubjectPublicKeyInfo` parser;
//! - `error`: [`TokenRejection`], [`TokenError`] and [`TokenKeyError`];
//! - `replay`: [`ReplayCache`], single use of each `jti` on one replica.

mod error;
mod key;
mod replay;
mod verify;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

pub(crate) use error::{TokenError, TokenKeyError, TokenRejection};
pub use key::TokenKey;
pub(crate) use replay::{DEFAULT_REPLAY_CACHE_ENTRIES, ReplayCache, ReplayError};
use verify::{
    RawClaims, RawHeader, check_claims, check_header, claims_from_raw, parse_json_object,
    split_token, verify_signature,
};

/// Token lifetime (`exp - iat`) the issuer mints by default, and the longest the edge accepts
/// by default: one number, so the two agree unless an operator changes one of them.
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 600;
/// Longest token accepted, in bytes.
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest `host` claim, in bytes (a DNS name).
pub(crate) const MAX_HOST_LEN: usize = crate::hostname::MAX_NAME;
/// Longest `sub` claim, in bytes.
pub(crate) const MAX_SUB_LEN: usize = 256;
/// Longest `jti` claim, in bytes.
pub(crate) const MAX_JTI_LEN: usize = 256;
/// The only accepted JWS algorithm.
pub(crate) const ALG_ES256: &str = "ES256";
/// The only accepted `typ` header value.
pub(crate) const TYP_JWT: &str = "JWT";

/// Longest token-controlled text (in output characters) copied into a log line.
const MAX_LOGGED_CHARS: usize = 128;
/// Most audiences listed in a log line.
const MAX_LOGGED_AUDIENCES: usize = 16;
/// ES256 signature: r ‖ s, 32 bytes each.
const ES256_SIGNATURE_LEN: usize = 64;

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
    /// Upper bound on `exp - iat` (default [`DEFAULT_TOKEN_LIFETIME_SECS`]).
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
    pub(crate) fn as_slice(&self) -> &[String] {
        match self {
            Self::One(aud) => std::slice::from_ref(aud),
            Self::Many(auds) => auds,
        }
    }

    /// Whether `audience` is one of them (exact, case-sensitive match).
    #[must_use]
    pub(crate) fn contains(&self, audience: &str) -> bool {
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

#[cfg(test)]
mod tests_claims;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_verify;
