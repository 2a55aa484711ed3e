//! Error types of token verification, token signing and token-key loading. Token-controlled
//! strings are escaped and capped (see [`crate::text`]) before they reach a `Display`.

use crate::text::{quote_untrusted, quote_untrusted_list};

use super::key::{PEM_BEGIN, PEM_END};
use super::{ES256_SIGNATURE_LEN, MAX_LOGGED_AUDIENCES, MAX_LOGGED_CHARS};

/// Why a configured token key could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenKeyError {
    #[error("token key id is empty")]
    EmptyKid,
    #[error(
        "expected exactly one PEM \"PUBLIC KEY\" block ({PEM_BEGIN} ... {PEM_END}) holding a P-256 EC public key"
    )]
    NotPem,
    #[error("PEM body is not valid base64 (expected a P-256 EC public key)")]
    BadBase64,
    #[error("expected a P-256 EC public key as SubjectPublicKeyInfo DER: {detail}")]
    BadDer { detail: &'static str },
    #[error("expected a P-256 EC public key, found a key of another algorithm (RSA or Ed25519)")]
    NotEcKey,
    #[error("expected a P-256 EC public key, found an EC key on another curve (P-384 or P-521)")]
    NotP256,
    #[error("expected a P-256 EC public key: {detail}")]
    BadPoint { detail: &'static str },
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
    /// Every label [`TokenRejection::reason`] gives, so their metric series can exist at 0.
    pub(crate) const REASONS: [&'static str; 13] = [
        "too_long",
        "malformed",
        "alg_none",
        "alg_not_allowed",
        "header_not_allowed",
        "unknown_kid",
        "bad_signature",
        "bad_claims",
        "wrong_issuer",
        "wrong_audience",
        "not_yet_valid",
        "expired",
        "lifetime_too_long",
    ];

    /// Stable `snake_case` label for metrics (bounded cardinality).
    #[must_use]
    pub(crate) fn reason(&self) -> &'static str {
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

/// Why [`sign_token`](super::sign_token) could not build a token.
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

/// Quoted, escaped, capped rendering of a token-provided string for a log line.
fn quoted(s: &str) -> String {
    quote_untrusted(s, MAX_LOGGED_CHARS)
}

fn audience_list(auds: &[String]) -> String {
    quote_untrusted_list(auds, MAX_LOGGED_AUDIENCES, MAX_LOGGED_CHARS)
}
