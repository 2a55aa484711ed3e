//! What an authorized sign request gets, without I/O: the user certificate (tenant's user CA)
//! and the front B token (tenant's ES256 key), plus the JSON answer the helpers read.

use std::time::Duration;

use russh::keys::ssh_key::{Certificate, PrivateKey, PublicKey};
use serde_json::{Value, json};

use crate::ssh_cert::{STANDARD_USER_EXTENSIONS, UserCertificate, sign_user_certificate};

use super::api::{ApiError, Caller, IssueSettings, SignRequest};
use crate::hostname::fits_dns;

/// Everything random or time-dependent in one issuance, so building it stays deterministic.
#[derive(Debug, Clone)]
pub(crate) struct Issuance {
    pub now: u64,
    pub serial: u64,
    pub jti: String,
}

impl Issuance {
    pub(crate) fn random(now: u64) -> Self {
        Self {
            now,
            serial: rand::random(),
            jti: hex::encode(rand::random::<[u8; 16]>()),
        }
    }
}

/// The certificate key id: `tenant=<name> api_key=<id> workload=<host>`.
pub(crate) fn key_id(caller: &Caller<'_>, host: &str) -> String {
    format!(
        "tenant={} api_key={} workload={host}",
        caller.tenant.name, caller.api_key_id
    )
}

/// The token claims for `host`.
pub(crate) fn claims(
    settings: &IssueSettings,
    caller: &Caller<'_>,
    host: &str,
    at: &Issuance,
) -> Value {
    json!({
        "iss": settings.token_issuer,
        "aud": settings.token_audience,
        "sub": format!("tenant:{}/api_key:{}", caller.tenant.name, caller.api_key_id),
        "jti": at.jti,
        "host": host,
        "iat": at.now,
        "exp": at.now + settings.token_lifetime.as_secs(),
    })
}

/// Signs the user certificate for `public_key`.
pub(crate) fn certificate(
    ca: &PrivateKey,
    public_key: &PublicKey,
    principal: &str,
    key_id: &str,
    validity: Duration,
    at: &Issuance,
) -> Result<Certificate, russh::keys::ssh_key::Error> {
    sign_user_certificate(
        ca,
        &UserCertificate {
            public_key,
            principals: &[principal],
            key_id,
            serial: at.serial,
            now: at.now,
            validity_secs: validity.as_secs(),
            extensions: STANDARD_USER_EXTENSIONS,
        },
    )
}

/// What a successful sign returns, plus facts for the log line.
pub(crate) struct Issued {
    pub body: Value,
    pub host: String,
    pub serial: u64,
}

/// Issues certificate and token for an authorized request.
pub(crate) fn issue(
    settings: &IssueSettings,
    caller: &Caller<'_>,
    req: &SignRequest,
    at: &Issuance,
) -> Result<Issued, IssueError> {
    let host = req.workload.host(&caller.tenant.name, &settings.suffix);
    if !fits_dns(&host) {
        return Err(IssueError::Api(ApiError::HostTooLong { host }));
    }
    let key_id = key_id(caller, &host);
    let cert = certificate(
        &caller.tenant.user_ca,
        &req.public_key,
        req.workload.principal(),
        &key_id,
        settings.cert_validity,
        at,
    )
    .map_err(|e| IssueError::Certificate(e.to_string()))?;
    let line = cert
        .to_openssh()
        .map_err(|e| IssueError::Certificate(e.to_string()))?;
    let jwt = crate::auth::token::sign_token(
        &caller.tenant.token_key,
        &caller.tenant.token_kid,
        &claims(settings, caller, &host, at),
    )
    .map_err(|e| IssueError::Token(e.to_string()))?;
    Ok(Issued {
        body: json!({
            "ssh_certificate": line,
            "jwt": jwt,
            "proxy_address": settings.proxy_address,
            "ssh_cert_expires_at": iso8601_utc(cert.valid_before()),
        }),
        host,
        serial: at.serial,
    })
}

/// Why issuing failed: a client error, or a server-side signing failure (logged, not sent).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IssueError {
    #[error(transparent)]
    Api(ApiError),
    #[error("cannot sign the user certificate: {0}")]
    Certificate(String),
    #[error("cannot sign the token: {0}")]
    Token(String),
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn iso8601_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant), proleptic Gregorian calendar.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
