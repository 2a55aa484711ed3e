//! OpenSSH keys and user certificates, made in one place: the issuer's certificates for users,
//! the edge's per-session certificates for its backend login, and the demo world's (lab) user
//! certificates all come from [`sign_user_certificate`]; only the extension set differs, and it
//! is named at each call site.

use std::path::{Path, PathBuf};

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{self, Certificate, LineEnding, PrivateKey, PublicKey};

/// Certificates start this long before they are issued, for clock skew on the backends.
pub(crate) const BACKDATE_SECS: u64 = 60;

/// The extensions `ssh-keygen -s` grants by default: what a user certificate from the issuer
/// (and the lab, which stands in for it) carries.
pub(crate) const STANDARD_USER_EXTENSIONS: &[&str] = &[
    "permit-pty",
    "permit-port-forwarding",
    "permit-agent-forwarding",
    "permit-X11-forwarding",
    "permit-user-rc",
];

/// The extensions of the edge's own backend login: everything the edge may forward for a user
/// (it enforces the user's certificate itself), without `permit-user-rc`.
pub(crate) const BACKEND_LOGIN_EXTENSIONS: &[&str] = &[
    "permit-pty",
    "permit-port-forwarding",
    "permit-agent-forwarding",
    "permit-X11-forwarding",
];

/// What goes into one user certificate.
#[derive(Debug, Clone)]
pub(crate) struct UserCertificate<'a> {
    pub public_key: &'a PublicKey,
    pub principals: &'a [&'a str],
    pub key_id: &'a str,
    pub serial: u64,
    /// Issue time, seconds since the epoch; valid from [`BACKDATE_SECS`] before it.
    pub now: u64,
    /// Seconds from `now` to the end of validity.
    pub validity_secs: u64,
    /// Extensions granted, each with an empty value (e.g. [`STANDARD_USER_EXTENSIONS`]).
    pub extensions: &'a [&'a str],
}

/// Signs a user certificate with `ca`.
///
/// # Errors
/// What ssh-key reports (an unusable CA key or field).
pub(crate) fn sign_user_certificate(
    ca: &PrivateKey,
    req: &UserCertificate<'_>,
) -> Result<Certificate, ssh_key::Error> {
    let mut b = Builder::new(
        rand::random::<[u8; 32]>().to_vec(),
        req.public_key.key_data().clone(),
        req.now.saturating_sub(BACKDATE_SECS),
        req.now.saturating_add(req.validity_secs),
    )?;
    b.serial(req.serial)?
        .cert_type(CertType::User)?
        .key_id(req.key_id)?;
    for principal in req.principals {
        b.valid_principal(*principal)?;
    }
    for ext in req.extensions {
        b.extension(*ext, "")?;
    }
    b.sign(ca)
}

/// A fresh ed25519 key (seeded from the OS RNG).
#[must_use]
pub fn random_ed25519_key() -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&rand::random::<[u8; 32]>()))
}

/// Why a key file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub(crate) struct KeyFileError {
    pub path: PathBuf,
    pub reason: String,
}

/// Writes an OpenSSH private key file with mode 0600 and its `.pub` beside it.
///
/// # Errors
/// [`KeyFileError`] naming the file that could not be written.
pub(crate) fn write_key(path: &Path, key: &PrivateKey) -> Result<(), KeyFileError> {
    let err = |path: &Path, e: &dyn std::fmt::Display| KeyFileError {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    key.write_openssh_file(path, LineEnding::LF)
        .map_err(|e| err(path, &e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(path, &e))?;
    }
    let public = key.public_key().to_openssh().map_err(|e| err(path, &e))?;
    let pub_path = path.with_extension("pub");
    std::fs::write(&pub_path, public + "\n").map_err(|e| err(&pub_path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_carries_what_was_asked() {
        let ca = random_ed25519_key();
        let subject = random_ed25519_key();
        let cert = sign_user_certificate(
            &ca,
            &UserCertificate {
                public_key: subject.public_key(),
                principals: &["abc1234", "root"],
                key_id: "ssh-edge user_key_id=alice serial=7",
                serial: 7,
                now: 1_000_000,
                validity_secs: 300,
                extensions: BACKEND_LOGIN_EXTENSIONS,
            },
        )
        .unwrap();
        cert.verify_signature().unwrap();
        assert_eq!(cert.valid_principals(), ["abc1234", "root"]);
        assert_eq!(cert.key_id(), "ssh-edge user_key_id=alice serial=7");
        assert_eq!(cert.serial(), 7);
        assert_eq!(cert.cert_type(), CertType::User);
        assert_eq!(cert.signature_key(), ca.public_key().key_data());
        assert_eq!(cert.valid_after(), 1_000_000 - BACKDATE_SECS);
        assert_eq!(cert.valid_before(), 1_000_300);
        let mut granted: Vec<&str> = cert.extensions().keys().map(String::as_str).collect();
        granted.sort_unstable();
        let mut expected = BACKEND_LOGIN_EXTENSIONS.to_vec();
        expected.sort_unstable();
        assert_eq!(granted, expected);
    }

    #[test]
    fn key_files_are_private_and_paired() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id_ed25519");
        let key = random_ed25519_key();
        write_key(&path, &key).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let read = PrivateKey::read_openssh_file(&path).unwrap();
        assert_eq!(read.public_key(), key.public_key());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        assert_eq!(public.trim(), key.public_key().to_openssh().unwrap());
        let missing = dir.path().join("no/such/dir/key");
        let err = write_key(&missing, &key).unwrap_err();
        assert_eq!(err.path, missing);
    }
}
