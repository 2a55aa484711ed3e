//! Front A: TLS with SNI naming the workload, then SSH terminated by russh.
//!
//! After the handshake the first byte tells what follows: `S` starts an SSH identification
//! string; anything else would be a token preamble (front B, not served yet) and is refused.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsSettings;

/// Builds the rustls acceptor (aws-lc-rs provider, TLS 1.2 and 1.3).
pub fn acceptor(settings: &TlsSettings) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(settings.cert_chain.clone(), settings.key.clone_key())?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What the client sent first after the TLS handshake.
pub enum FirstByte {
    Ssh,
    Other(u8),
    Eof,
}

/// Reads the first byte of the decrypted stream; the returned stream replays it.
pub async fn read_first_byte<S: AsyncRead + Unpin>(
    mut stream: S,
) -> io::Result<(FirstByte, Rewind<S>)> {
    let mut byte = [0u8; 1];
    let n = stream.read(&mut byte).await?;
    let kind = match (n, byte[0]) {
        (0, _) => FirstByte::Eof,
        (_, b'S') => FirstByte::Ssh,
        (_, other) => FirstByte::Other(other),
    };
    Ok((
        kind,
        Rewind {
            prefix: if n == 1 { Some(byte[0]) } else { None },
            inner: stream,
        },
    ))
}

/// A stream that yields one already-read byte before reading from the inner stream.
pub struct Rewind<S> {
    prefix: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(b) = self.prefix
            && buf.remaining() > 0
        {
            buf.put_slice(&[b]);
            self.prefix = None;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Socket read buffer under TLS. rustls pulls ciphertext in 4 KiB steps; without a buffer each
/// 16 KiB record costs four or more `recv` calls. One 64 KiB read serves several records.
pub const TLS_READ_BUFFER: usize = 64 * 1024;

/// The TCP side of a TLS connection: reads buffered (see [`TLS_READ_BUFFER`]), writes direct.
pub fn buffered(stream: TcpStream) -> tokio::io::BufReader<TcpStream> {
    tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream)
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
        assert!(matches!(kind, FirstByte::Other(0)));
        let (kind, _) = read_first_byte(&[][..]).await.unwrap();
        assert!(matches!(kind, FirstByte::Eof));
    }
}
