//! The `Authorization: <scheme> <credential>` header, read one way by every HTTP server here
//! (the signing service's API keys and control-plane bearer, the admin endpoint's bearer).

/// The credential in an `Authorization` header value (scheme matched without regard to case,
/// surrounding blanks ignored); `None` when absent, malformed or of another scheme.
pub(crate) fn credential<'a>(value: Option<&'a [u8]>, scheme: &str) -> Option<&'a str> {
    let value = std::str::from_utf8(value?).ok()?;
    let (given, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (given.eq_ignore_ascii_case(scheme) && !credential.is_empty()).then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::credential;

    #[test]
    fn reads_the_credential_of_the_named_scheme_only() {
        assert_eq!(credential(Some(b"Bearer t0k"), "Bearer"), Some("t0k"));
        assert_eq!(credential(Some(b" bearer   t0k "), "Bearer"), Some("t0k"));
        for bad in [
            None,
            Some(&b""[..]),
            Some(b"Bearer"),
            Some(b"Bearer   "),
            Some(b"Basic t0k"),
            Some(b"Bearert0k"),
            Some(b"Bearer \xff"),
        ] {
            assert_eq!(credential(bad, "Bearer"), None, "{bad:?}");
        }
    }
}
