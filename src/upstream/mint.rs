//! Short-lived user certificates the edge mints per session for its backend login.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{self, Certificate, PrivateKey};

/// What goes into a minted backend certificate.
pub struct MintRequest<'a> {
    pub subject: &'a PrivateKey,
    pub principal: &'a str,
    /// Names the user behind the session so backend logs show who it was.
    pub key_id: &'a str,
    pub validity: Duration,
}

/// A fresh ed25519 key (seeded from the OS RNG).
pub fn random_ed25519_key() -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()))
}

/// Signs a user certificate for `req.subject` with the edge CA. Valid from one minute ago
/// (backend clock skew) until `validity` from now.
pub fn mint_backend_certificate(
    ca: &PrivateKey,
    req: &MintRequest<'_>,
) -> Result<Certificate, ssh_key::Error> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut builder = Builder::new(
        rand::random::<[u8; 32]>().to_vec(),
        req.subject.public_key().key_data().clone(),
        now.saturating_sub(60),
        now + req.validity.as_secs(),
    )?;
    builder.serial(rand::random::<u64>())?;
    builder.cert_type(CertType::User)?;
    builder.key_id(req.key_id)?;
    builder.valid_principal(req.principal)?;
    for ext in [
        "permit-pty",
        "permit-port-forwarding",
        "permit-agent-forwarding",
        "permit-X11-forwarding",
    ] {
        builder.extension(ext, "")?;
    }
    builder.sign(ca)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
