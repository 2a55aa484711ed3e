//! What `hyper::Uri` and its `Authority` leave to their callers, for every address we parse with
//! them (admin URLs, `--replicas`, the signing API, `control_plane.url`, backends, the issuer's
//! `proxy_address`).

use hyper::http::uri::Authority;

/// The port after the host is not a number from 1 to 65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the port is not a number from 1 to 65535")]
pub(crate) struct BadPort;

/// The port `authority` gives, `None` when it gives none. `hyper::Uri` keeps a port's text
/// unchecked (`:99999`, `:+80`, a bare `:`) and its `port_u16` then reads as no port at all,
/// on which the connector would quietly use 80 or 443: every address we connect to passes here.
///
/// # Errors
/// [`BadPort`] when the host is followed by anything but `:` and a port from 1 to 65535.
pub(crate) fn explicit_port(authority: &Authority) -> Result<Option<u16>, BadPort> {
    match authority.port() {
        Some(port) if port.as_str().bytes().all(|b| b.is_ascii_digit()) && port.as_u16() != 0 => {
            Ok(Some(port.as_u16()))
        }
        Some(_) => Err(BadPort),
        // No readable port: either none at all (the authority ends with its host) or garbage.
        None if authority.as_str().ends_with(authority.host()) => Ok(None),
        None => Err(BadPort),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_checked_where_uri_does_not() {
        for (authority, want) in [
            ("example.test", Ok(None)),
            ("example.test:8443", Ok(Some(8443))),
            ("[::1]", Ok(None)),
            ("[::1]:9100", Ok(Some(9100))),
            ("user@example.test", Ok(None)),
            ("example.test:65535", Ok(Some(65535))),
            ("example.test:0", Err(BadPort)),
            ("example.test:65536", Err(BadPort)),
            ("example.test:+80", Err(BadPort)),
            ("example.test:", Err(BadPort)),
            ("example.test:x", Err(BadPort)),
            ("[::1]:", Err(BadPort)),
        ] {
            let parsed: Authority = authority.parse().unwrap();
            assert_eq!(explicit_port(&parsed), want, "{authority}");
        }
    }
}
