//! A read-ahead buffer under TLS that exists only while it holds bytes.
//!
//! rustls pulls ciphertext in 4 KiB steps; straight from the socket each 16 KiB record costs
//! four or more `recv` calls, so one 64 KiB read ahead serves several records. A fixed buffer
//! (`tokio::io::BufReader`) keeps its 64 KiB, zero-filled and resident, for the connection's
//! life, idle or not; this one takes its buffer (not zero-filled) when the socket has data and
//! gives it back when the socket has nothing more to read, so an idle TLS session holds none.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much one socket read takes ahead.
pub(crate) const READ_AHEAD: usize = 64 * 1024;

/// Reads through a read-ahead buffer, writes (vectored too) straight through.
pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Read and not yet handed out; no capacity while the socket is idle.
    ahead: BytesMut,
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(inner: S) -> Self {
        Self {
            inner,
            ahead: BytesMut::new(),
        }
    }

    /// The bytes buffered now (0 while idle): what the buffer costs.
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.ahead.capacity()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.ahead.is_empty() {
            // A reader that asks for as much as we would read ahead gets it directly.
            if out.remaining() >= READ_AHEAD {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            this.ahead.clear();
            this.ahead.reserve(READ_AHEAD);
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.ahead) {
                Poll::Ready(Ok(n)) if n > 0 => {}
                // Idle, failed or at EOF: nothing is held, so nothing is kept.
                other => {
                    this.ahead = BytesMut::new();
                    return other.map_ok(|_| ());
                }
            }
        }
        let n = out.remaining().min(this.ahead.len());
        out.put_slice(&this.ahead[..n]);
        this.ahead.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn small_reads_are_served_ahead_and_an_idle_socket_holds_no_buffer() {
        let (mut peer, inner) = tokio::io::duplex(256 * 1024);
        let mut reader = ReadAhead::new(inner);
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
        peer.write_all(&data).await.unwrap();

        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).await.unwrap();
        got.extend_from_slice(&chunk[..n]);
        assert_eq!(
            reader.ahead.len(),
            READ_AHEAD - 4096,
            "one socket read took a whole read-ahead, not the 4 KiB asked"
        );
        while got.len() < data.len() {
            let n = reader.read(&mut chunk).await.unwrap();
            assert!(n > 0, "no early EOF");
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);

        // Nothing more to read: the next read waits, and waits without a buffer.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut read_buf = ReadBuf::new(&mut chunk);
        assert!(
            Pin::new(&mut reader)
                .poll_read(&mut cx, &mut read_buf)
                .is_pending()
        );
        assert_eq!(reader.buffered_capacity(), 0);

        drop(peer);
        assert_eq!(reader.read(&mut chunk).await.unwrap(), 0, "EOF passed on");
    }
}
