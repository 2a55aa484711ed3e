//! Byte-stream forwarding for the passthrough front (B): the hot path of the fastest mode.
//!
//! Two fixed buffers per connection, allocated once and reused for every chunk; half-close is
//! passed on (EOF from one side shuts down the other side's write half), and a TLS peer that
//! closes without `close_notify` (the installed helpers do) counts as a normal EOF.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::bytes_count::ByteCounter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Buffer size per direction: large enough for several TLS records per read.
pub const SPLICE_BUFFER: usize = 64 * 1024;

/// Bytes moved by a finished splice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Spliced {
    /// Client → backend.
    pub up: u64,
    /// Backend → client.
    pub down: u64,
}

/// Copies both ways until both directions have ended, adding to `up` / `down` as bytes are
/// read (so long sessions show progress, and nothing depends on how a session ends).
pub async fn splice<C, B>(
    client: C,
    backend: B,
    up: ByteCounter,
    down: ByteCounter,
) -> io::Result<Spliced>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = Counted {
        inner: client,
        counter: up,
    };
    let mut backend = Counted {
        inner: backend,
        counter: down,
    };
    let (up, down) = tokio::io::copy_bidirectional_with_sizes(
        &mut client,
        &mut backend,
        SPLICE_BUFFER,
        SPLICE_BUFFER,
    )
    .await?;
    Ok(Spliced { up, down })
}

/// Adds the bytes read through it to a counter (one atomic add per read of up to 64 KiB), and
/// reads `UnexpectedEof` — a TLS peer gone without `close_notify` — as an ordinary end.
pub struct Counted<S> {
    inner: S,
    counter: ByteCounter,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => {
                self.counter.inc_by((buf.filled().len() - before) as u64);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_passes_half_close_on() {
        let (client, mut client_peer) = tokio::io::duplex(1024);
        let (backend, mut backend_peer) = tokio::io::duplex(1024);
        let (up_count, down_count) = (
            ByteCounter::new(prometheus::IntCounter::new("up", "u").unwrap()),
            ByteCounter::new(prometheus::IntCounter::new("down", "d").unwrap()),
        );
        let task = tokio::spawn(splice(
            client,
            backend,
            up_count.clone(),
            down_count.clone(),
        ));
        let up: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let up2 = up.clone();
        let writer = tokio::spawn(async move {
            client_peer.write_all(&up2).await.unwrap();
            client_peer.shutdown().await.unwrap();
            let mut down = Vec::new();
            client_peer.read_to_end(&mut down).await.unwrap();
            down
        });
        let mut got = Vec::new();
        backend_peer.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, up, "client bytes reach the backend, then EOF");
        backend_peer.write_all(b"bye").await.unwrap();
        backend_peer.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"bye");
        let spliced = task.await.unwrap().unwrap();
        assert_eq!(
            spliced,
            Spliced {
                up: 200_000,
                down: 3
            }
        );
        assert_eq!(
            (up_count.get(), down_count.get()),
            (200_000, 3),
            "counters follow the bytes"
        );
    }
}
