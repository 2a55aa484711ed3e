//! PROXY protocol v1 and v2 (HAProxy's spec), as an L4 load balancer sends it in front of the
//! edge. Parsing is the `ppp` crate behind one pure function, [`parse`] (bytes in, fuzzable);
//! [`read_header`] feeds it from a socket and hands back any bytes read past the header.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ppp::{HeaderResult, PartialResult, v1, v2};
use tokio::io::{AsyncRead, AsyncReadExt};

/// `listen.proxy_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    Off,
    V1,
    V2,
    /// Either version.
    Any,
}

impl ProxyMode {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "off" => Self::Off,
            "v1" => Self::V1,
            "v2" => Self::V2,
            "any" => Self::Any,
            _ => return None,
        })
    }
}

/// Longest header accepted: a v1 line is at most 107 bytes; a v2 header may carry TLVs (load
/// balancers add a few hundred bytes at most).
pub(crate) const MAX_HEADER_LEN: usize = 4096;

const V1_PREFIX: &[u8] = b"PROXY ";
/// The longest v1 line, CRLF included (the spec's 107 bytes).
const V1_MAX_LEN: usize = 107;
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Could still become a header: read more.
    Incomplete,
    /// A whole header of `len` bytes. `source` is the client's address; `None` for v2 `LOCAL`
    /// and v1 `UNKNOWN` (the balancer's own health checks): use the TCP peer.
    Header {
        len: usize,
        source: Option<SocketAddr>,
        /// "v1" or "v2".
        version: &'static str,
    },
}

/// Why the first bytes are not an acceptable header. Messages name what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("expected a PROXY protocol {expected} header, got {got:?}")]
    NotAHeader { expected: &'static str, got: String },
    #[error("PROXY protocol {got} header where only {expected} is accepted")]
    WrongVersion {
        got: &'static str,
        expected: &'static str,
    },
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("connection closed inside the PROXY protocol header")]
    Truncated,
    #[error("no complete PROXY protocol header within {0}s")]
    Timeout(u64),
    #[error("reading the PROXY protocol header: {0}")]
    Io(String),
}

impl ProxyError {
    /// No header at all (as opposed to a bad one).
    pub(crate) fn is_missing(&self) -> bool {
        matches!(self, ProxyError::NotAHeader { .. })
    }
}

fn expected(mode: ProxyMode) -> &'static str {
    match mode {
        ProxyMode::V1 => "v1",
        ProxyMode::V2 => "v2",
        ProxyMode::Any | ProxyMode::Off => "v1 or v2",
    }
}

/// Whether `a` and `b` agree on their common prefix.
fn agrees(a: &[u8], b: &[u8]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

fn v1_source(addresses: &v1::Addresses) -> Option<SocketAddr> {
    match addresses {
        v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        v1::Addresses::Tcp6(a) => {
            Some(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
        }
        v1::Addresses::Unknown => None,
    }
}

fn v2_source(header: &v2::Header<'_>) -> Result<Option<SocketAddr>, ProxyError> {
    if header.command == v2::Command::Local {
        return Ok(None);
    }
    match &header.addresses {
        v2::Addresses::IPv4(a) => Ok(Some(SocketAddr::new(
            IpAddr::V4(a.source_address),
            a.source_port,
        ))),
        v2::Addresses::IPv6(a) => Ok(Some(SocketAddr::new(
            IpAddr::V6(a.source_address),
            a.source_port,
        ))),
        v2::Addresses::Unspecified => Ok(None),
        v2::Addresses::Unix(_) => Err(ProxyError::Malformed(
            "a UNIX socket address cannot be a client's address".into(),
        )),
    }
}

/// Parses the start of a connection as a PROXY header of the versions `mode` accepts.
pub fn parse(input: &[u8], mode: ProxyMode) -> Result<Parsed, ProxyError> {
    let is_v1 = agrees(input, V1_PREFIX);
    let is_v2 = agrees(input, V2_SIGNATURE);
    let not_a_header = || ProxyError::NotAHeader {
        expected: expected(mode),
        got: crate::text::escape_untrusted(
            &String::from_utf8_lossy(&input[..input.len().min(16)]),
            32,
        ),
    };
    match mode {
        ProxyMode::Off => return Err(not_a_header()),
        ProxyMode::V1 if !is_v1 => {
            return Err(if is_v2 && input.len() >= V2_SIGNATURE.len() {
                ProxyError::WrongVersion {
                    got: "v2",
                    expected: "v1",
                }
            } else {
                not_a_header()
            });
        }
        ProxyMode::V2 if !is_v2 => {
            return Err(if is_v1 && input.len() >= V1_PREFIX.len() {
                ProxyError::WrongVersion {
                    got: "v1",
                    expected: "v2",
                }
            } else {
                not_a_header()
            });
        }
        _ if !is_v1 && !is_v2 => return Err(not_a_header()),
        _ => {}
    }
    if input.len() < V1_PREFIX.len().min(V2_SIGNATURE.len()) {
        return Ok(Parsed::Incomplete);
    }
    // A v1 header is one line: parse it only once the whole line is here (the parser takes
    // some cut lines for bad ones).
    if !is_v2 && !input.windows(2).any(|w| w == b"\r\n") {
        return if input.len() >= V1_MAX_LEN {
            Err(ProxyError::Malformed(format!(
                "v1: no CRLF within {V1_MAX_LEN} bytes"
            )))
        } else {
            Ok(Parsed::Incomplete)
        };
    }
    let result = if is_v2 {
        HeaderResult::V2(v2::Header::try_from(input))
    } else {
        HeaderResult::V1(v1::Header::try_from(input))
    };
    if result.is_incomplete() {
        return if input.len() >= MAX_HEADER_LEN {
            Err(ProxyError::TooLong)
        } else {
            Ok(Parsed::Incomplete)
        };
    }
    match result {
        HeaderResult::V1(Ok(h)) => Ok(Parsed::Header {
            len: h.header.len(),
            source: v1_source(&h.addresses),
            version: "v1",
        }),
        HeaderResult::V2(Ok(h)) => {
            let len = h.len();
            if len > MAX_HEADER_LEN {
                return Err(ProxyError::TooLong);
            }
            Ok(Parsed::Header {
                len,
                source: v2_source(&h)?,
                version: "v2",
            })
        }
        HeaderResult::V1(Err(e)) => Err(ProxyError::Malformed(format!("v1: {e}"))),
        HeaderResult::V2(Err(e)) => Err(ProxyError::Malformed(format!("v2: {e}"))),
    }
}

/// A header as read from a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProxyHeader {
    /// The client's address; `None`: use the TCP peer (the balancer's own connection).
    pub source: Option<SocketAddr>,
    /// "v1" or "v2".
    pub version: &'static str,
    /// Bytes read past the header: they belong to the client's protocol.
    pub rest: Vec<u8>,
}

/// Reads a header from `stream` within `timeout`.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyMode,
    timeout: Duration,
) -> Result<ProxyHeader, ProxyError> {
    let read = async {
        let mut buf = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| ProxyError::Io(e.to_string()))?;
            if n == 0 {
                return Err(if buf.is_empty() {
                    ProxyError::NotAHeader {
                        expected: expected(mode),
                        got: String::new(),
                    }
                } else {
                    ProxyError::Truncated
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            match parse(&buf, mode)? {
                Parsed::Incomplete => continue,
                Parsed::Header {
                    len,
                    source,
                    version,
                } => {
                    return Ok(ProxyHeader {
                        source,
                        version,
                        rest: buf.split_off(len),
                    });
                }
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(ProxyError::Timeout(timeout.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_header(src: &str, dst: &str) -> Vec<u8> {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        v2::Builder::with_addresses(
            v2::Version::Two | v2::Command::Proxy,
            v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap()
    }

    #[test]
    fn v1_tcp4_and_tcp6() {
        let h = b"PROXY TCP4 127.0.0.2 127.0.0.1 51000 22\r\nSSH-2.0-x\r\n";
        let Parsed::Header { len, source, .. } = parse(h, ProxyMode::Any).unwrap() else {
            panic!("incomplete")
        };
        assert_eq!(&h[len..], b"SSH-2.0-x\r\n");
        assert_eq!(source, Some("127.0.0.2:51000".parse().unwrap()));
        let h = b"PROXY TCP6 ::1 ::1 40000 443\r\n";
        assert_eq!(
            parse(h, ProxyMode::V1).unwrap(),
            Parsed::Header {
                len: h.len(),
                source: Some("[::1]:40000".parse().unwrap()),
                version: "v1"
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n", ProxyMode::V1).unwrap(),
            Parsed::Header {
                len: 15,
                source: None,
                version: "v1"
            }
        );
    }

    #[test]
    fn v2_proxy_and_local() {
        let mut h = v2_header("127.0.0.3:1234", "127.0.0.1:22");
        let len = h.len();
        h.extend_from_slice(b"\x16\x03\x01");
        assert_eq!(
            parse(&h, ProxyMode::V2).unwrap(),
            Parsed::Header {
                len,
                source: Some("127.0.0.3:1234".parse().unwrap()),
                version: "v2"
            }
        );
        let local = v2::Builder::new(
            v2::Version::Two | v2::Command::Local,
            v2::AddressFamily::Unspecified | v2::Protocol::Unspecified,
        )
        .build()
        .unwrap();
        assert_eq!(
            parse(&local, ProxyMode::Any).unwrap(),
            Parsed::Header {
                len: local.len(),
                source: None,
                version: "v2"
            }
        );
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n".to_vec();
        let v2 = v2_header("[2001:db8::1]:5", "[2001:db8::2]:6");
        for h in [v1, v2] {
            for n in 0..h.len() {
                assert_eq!(
                    parse(&h[..n], ProxyMode::Any),
                    Ok(Parsed::Incomplete),
                    "prefix of {n} bytes"
                );
            }
            assert!(matches!(
                parse(&h, ProxyMode::Any),
                Ok(Parsed::Header { .. })
            ));
        }
    }

    #[test]
    fn no_header_and_wrong_versions_are_refused() {
        let e = parse(b"SSH-2.0-OpenSSH_9.2\r\n", ProxyMode::Any).unwrap_err();
        assert!(e.is_missing(), "{e}");
        assert!(
            e.to_string()
                .contains("expected a PROXY protocol v1 or v2 header")
        );
        // A TLS ClientHello is no header either.
        assert!(
            parse(b"\x16\x03\x01\x02\x00", ProxyMode::V2)
                .unwrap_err()
                .is_missing()
        );
        let v2 = v2_header("127.0.0.3:1234", "127.0.0.1:22");
        assert_eq!(
            parse(&v2, ProxyMode::V1).unwrap_err(),
            ProxyError::WrongVersion {
                got: "v2",
                expected: "v1"
            }
        );
        assert_eq!(
            parse(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", ProxyMode::V2).unwrap_err(),
            ProxyError::WrongVersion {
                got: "v1",
                expected: "v2"
            }
        );
        assert!(matches!(
            parse(b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n", ProxyMode::V1),
            Err(ProxyError::Malformed(_))
        ));
        assert!(matches!(
            parse(
                &[b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
                ProxyMode::V1
            ),
            Err(ProxyError::Malformed(_) | ProxyError::TooLong)
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            for mode in [ProxyMode::V1, ProxyMode::V2, ProxyMode::Any] {
                let _ = parse(&bytes, mode);
                let mut v1 = b"PROXY ".to_vec();
                v1.extend_from_slice(&bytes);
                let _ = parse(&v1, mode);
                let mut v2 = V2_SIGNATURE.to_vec();
                v2.extend_from_slice(&bytes);
                if let Ok(Parsed::Header { len, .. }) = parse(&v2, mode) {
                    proptest::prop_assert!(len <= v2.len());
                }
            }
        }
    }

    #[tokio::test]
    async fn read_header_keeps_the_bytes_after_it() {
        let mut input: &[u8] = b"PROXY TCP4 127.0.0.2 127.0.0.1 51000 22\r\nSSH-2.0-x\r\n";
        let h = read_header(&mut input, ProxyMode::Any, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(h.source, Some("127.0.0.2:51000".parse().unwrap()));
        assert_eq!(h.version, "v1");
        assert_eq!(h.rest, b"SSH-2.0-x\r\n");
        let mut cut: &[u8] = b"PROXY TCP4 127.0.0.2";
        assert_eq!(
            read_header(&mut cut, ProxyMode::Any, Duration::from_secs(1))
                .await
                .unwrap_err(),
            ProxyError::Truncated
        );
        let mut empty: &[u8] = b"";
        assert!(
            read_header(&mut empty, ProxyMode::Any, Duration::from_secs(1))
                .await
                .unwrap_err()
                .is_missing()
        );
    }
}
