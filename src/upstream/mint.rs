//! Short-lived user certificates the edge mints per session for its backend login.

use std::time::Duration;

use russh::keys::ssh_key::{self, Certificate, PrivateKey};

pub use crate::ssh_cert::random_ed25519_key;
use crate::ssh_cert::{BACKEND_LOGIN_EXTENSIONS, UserCertificate, sign_user_certificate};

/// What goes into a minted backend certificate.
pub struct MintRequest<'a> {
    pub subject: &'a PrivateKey,
    pub principal: &'a str,
    /// Names the user behind the session so backend logs show who it was.
    pub key_id: &'a str,
    pub validity: Duration,
}

/// Signs a user certificate for `req.subject` with the edge CA. Valid from one minute ago
/// (backend clock skew) until `validity` from now.
pub fn mint_backend_certificate(
    ca: &PrivateKey,
    req: &MintRequest<'_>,
) -> Result<Certificate, ssh_key::Error> {
    sign_user_certificate(
        ca,
        &UserCertificate {
            public_key: req.subject.public_key(),
            principals: &[req.principal],
            key_id: req.key_id,
            serial: rand::random(),
            now: crate::time::unix_now(),
            validity_secs: req.validity.as_secs(),
            extensions: BACKEND_LOGIN_EXTENSIONS,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::certificate::CertType;

    #[test]
    fn minted_certificate_is_valid_and_names_the_user() {
        let ca = random_ed25519_key();
        let subject = random_ed25519_key();
        let cert = mint_backend_certificate(
            &ca,
            &MintRequest {
                subject: &subject,
                principal: "abc1234",
                key_id: "ssh-edge user_key_id=alice serial=7",
                validity: Duration::from_secs(300),
            },
        )
        .unwrap();
        cert.verify_signature().unwrap();
        assert_eq!(cert.valid_principals(), ["abc1234".to_string()]);
        assert_eq!(cert.key_id(), "ssh-edge user_key_id=alice serial=7");
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(cert.signature_key(), ca.public_key().key_data());
        assert!(cert.valid_before() > cert.valid_after());
        // The backend login set: no ~/.ssh/rc on the backend for edge sessions.
        assert!(cert.extensions().contains_key("permit-pty"));
        assert!(!cert.extensions().contains_key("permit-user-rc"));
        assert_eq!(cert.extensions().len(), BACKEND_LOGIN_EXTENSIONS.len());
    }
}
