//! The TLS listener: the handshake, then the first decrypted byte tells the fronts apart —
//! `S` starts an SSH identification string (front A, target from SNI); anything else is the
//! length prefix of a token preamble (front B).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::read_ahead::ReadAhead;
use tokio_rustls::server::TlsStream;

use crate::admission::stream::Prefixed;
use crate::config::TlsSettings;
use crate::reject::{Reason, Rejection};

/// Builds the rustls acceptor (aws-lc-rs provider, TLS 1.2 and 1.3).
pub(crate) fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, rustls::Error> {
    let config =
        crate::tls::server_config(settings.cert_chain.clone(), settings.key.clone_key(), &[])?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What the client sent first after the TLS handshake.
pub(crate) enum FirstByte {
    Ssh,
    /// Anything else: a token preamble's length prefix (front B).
    Other,
    Eof,
}

/// Reads the first byte of the decrypted stream; the returned stream replays it. A read error
/// hands the stream back (still open).
pub(crate) async fn read_first_byte<S: AsyncRead + Unpin>(
    mut stream: S,
) -> Result<(FirstByte, Prefixed<S>), (io::Error, S)> {
    let mut byte = [0u8; 1];
    let n = match stream.read(&mut byte).await {
        Ok(n) => n,
        Err(e) => return Err((e, stream)),
    };
    let kind = match (n, byte[0]) {
        (0, _) => FirstByte::Eof,
        (_, b'S') => FirstByte::Ssh,
        _ => FirstByte::Other,
    };
    Ok((kind, Prefixed::new(byte[..n].to_vec(), stream)))
}

/// The decrypted stream a TLS front serves.
pub(crate) type Decrypted<S> = Prefixed<TlsStream<ReadAhead<S>>>;

/// The TLS listener's context.
pub struct TlsFront {
    pub acceptor: TlsAcceptor,
    pub handshake_timeout: Duration,
}

impl TlsFront {
    /// Handshake and first byte, each within the handshake timeout. Returns the kind of what
    /// follows, the decrypted stream (replaying that byte) and the SNI. A refusal is handed to
    /// `refused` while the socket is still open, so it is counted before the client sees the
    /// close.
    pub(crate) async fn accept<S>(
        &self,
        stream: S,
        refused: impl FnOnce(Rejection),
    ) -> Option<(FirstByte, Decrypted<S>, Option<String>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let timeout = self.handshake_timeout;
        // Pinned here, not moved into the timeout: when the time is up the socket inside it
        // stays open until the refusal is recorded.
        let mut handshake = std::pin::pin!(self.acceptor.accept(buffered(stream)).into_fallible());
        let tls = match tokio::time::timeout(timeout, &mut handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err((e, _socket))) => {
                refused(Rejection::new(Reason::TlsHandshake, e.to_string()));
                return None;
            }
            Err(_) => {
                refused(Rejection::new(
                    Reason::TlsTimeout,
                    "no TLS handshake in time",
                ));
                return None;
            }
        };
        let sni = tls.get_ref().1.server_name().map(str::to_owned);
        let mut first = std::pin::pin!(read_first_byte(tls));
        match tokio::time::timeout(timeout, &mut first).await {
            Ok(Ok((first, stream))) => Some((first, stream, sni)),
            Ok(Err((e, _socket))) => {
                refused(Rejection::new(Reason::ReadError, e.to_string()));
                None
            }
            Err(_) => {
                refused(Rejection::new(
                    Reason::SilentClient,
                    "nothing sent after the TLS handshake",
                ));
                None
            }
        }
    }
}

/// The TCP side of a TLS connection: reads ahead while the socket has data (rustls pulls
/// ciphertext in 4 KiB steps; see [`crate::read_ahead`]), writes direct.
pub(crate) fn buffered<S: AsyncRead>(stream: S) -> ReadAhead<S> {
    ReadAhead::new(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rewind_replays_the_first_byte() {
        let data: &[u8] = b"SSH-2.0-x\r\n";
        let (kind, mut stream) = read_first_byte(data).await.unwrap();
        assert!(matches!(kind, FirstByte::Ssh));
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, data);
    }

    #[tokio::test]
    async fn detects_preamble_and_eof() {
        let (kind, _) = read_first_byte(&[0u8, 0, 1, 0][..]).await.unwrap();
        assert!(matches!(kind, FirstByte::Other));
        let (kind, _) = read_first_byte(&[][..]).await.unwrap();
        assert!(matches!(kind, FirstByte::Eof));
    }
}
