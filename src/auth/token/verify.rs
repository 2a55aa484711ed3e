//! The steps of [`verify_token`](super::verify_token): compact-JWS splitting and decoding, strict
//! JSON parsing, header checks, the ES256 signature, and claim presence, types and values.

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use serde_json::Value;

use crate::text::escape_untrusted;

use super::{
    ALG_ES256, Audience, ES256_SIGNATURE_LEN, MAX_HOST_LEN, MAX_JTI_LEN, MAX_LOGGED_CHARS,
    MAX_SUB_LEN, MAX_TOKEN_LEN, TYP_JWT, TokenClaims, TokenKey, TokenPolicy, TokenRejection,
};

/// The three decoded parts of a compact JWS, plus the signed text.
pub(super) struct Parts<'a> {
    /// `header_b64.payload_b64`, exactly as received.
    pub(super) signing_input: &'a [u8],
    pub(super) header: Vec<u8>,
    pub(super) payload: Vec<u8>,
    pub(super) signature: Vec<u8>,
}

fn malformed(detail: String) -> TokenRejection {
    TokenRejection::Malformed { detail }
}

pub(super) fn split_token(token: &[u8]) -> Result<Parts<'_>, TokenRejection> {
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

/// Parses a JSON object strictly: UTF-8 throughout, the top level an object (not an array
/// standing in for a struct), known fields not repeated, and nothing after it.
pub(super) fn parse_json_object<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    name: &str,
) -> Result<T, TokenRejection> {
    // serde_json checks UTF-8 only in the strings it keeps: a field it skips (an unknown claim)
    // could hold any bytes, and a token other JSON parsers reject would pass here (found by
    // fuzzing). JSON is UTF-8 (RFC 8259), so all of it is checked first.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(malformed(format!("{name} is not UTF-8")));
    };
    if !text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return Err(malformed(format!("{name} is not a JSON object")));
    }
    serde_json::from_str(text).map_err(|e| {
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
pub(super) struct RawHeader {
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
pub(super) fn check_header(
    policy: &TokenPolicy,
    header: RawHeader,
) -> Result<&TokenKey, TokenRejection> {
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

pub(super) fn verify_signature(
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
pub(super) struct RawClaims {
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
pub(super) fn claims_from_raw(raw: RawClaims) -> Result<TokenClaims, TokenRejection> {
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

pub(super) fn check_claims(
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

/// Unquoted, escaped, capped rendering of a library error message that may echo token bytes.
fn clean(s: &str) -> String {
    escape_untrusted(s, MAX_LOGGED_CHARS)
}
