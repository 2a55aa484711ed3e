//! Byte-stream forwarding for the passthrough front (B): the hot path of the fastest mode.
//!
//! Each direction reads into a buffer that exists only while bytes are moving: it is taken
//! (uninitialised, not zero-filled) when the source has data and given back when the source has
//! nothing more to read and everything read was written. An idle passthrough session therefore
//! holds no copy buffer at all (a fixed pair, as `tokio::io::copy_bidirectional` keeps, is
//! 128 KiB per session, idle or not); a busy one reuses the same allocation chunk after chunk.
//! Half-close is passed on (EOF from one side shuts down the other side's write half), and a TLS
//! peer that closes without `close_notify` (the installed helpers do) counts as a normal EOF.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::bytes_count::ByteCounter;

/// The most one read takes: several TLS records (16 KiB each) at once.
pub(crate) const SPLICE_BUFFER: usize = 64 * 1024;

/// Bytes moved by a finished splice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Spliced {
    /// Client → backend.
    pub up: u64,
    /// Backend → client.
    pub down: u64,
}

/// Copies both ways until both directions have ended, adding to `up` / `down` as bytes are
/// read (so long sessions show progress, and nothing depends on how a session ends).
pub(crate) async fn splice<C, B>(
    mut client: C,
    mut backend: B,
    up: ByteCounter,
    down: ByteCounter,
) -> io::Result<Spliced>
where
    C: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut to_backend = Direction::new(up);
    let mut to_client = Direction::new(down);
    poll_fn(|cx| {
        let up = to_backend.poll_copy(cx, &mut client, &mut backend)?;
        let down = to_client.poll_copy(cx, &mut backend, &mut client)?;
        match (up, down) {
            (Poll::Ready(up), Poll::Ready(down)) => Poll::Ready(Ok(Spliced { up, down })),
            _ => Poll::Pending,
        }
    })
    .await
}

/// Copies `input` → `remote` and `remote` → `output` until the remote side ends (the
/// client-side relay, `ssh-edge connect`). When `input` ends first, the remote side's write
/// half is shut down and the copy goes on until the remote side ends too; what `output` was
/// given is flushed by then. One task polls both directions, so neither a lock around the
/// remote stream (`tokio::io::split`) nor a second task sits between a read and its write.
pub(crate) async fn relay<S, I, O>(
    mut remote: S,
    mut input: I,
    mut output: O,
) -> io::Result<Spliced>
where
    S: AsyncRead + AsyncWrite + Unpin,
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let mut up = Direction::uncounted();
    let mut down = Direction::uncounted();
    poll_fn(|cx| {
        // The upstream direction may fail (a closed stdin) without ending the downstream one.
        if let Poll::Ready(Err(_)) = up.poll_copy(cx, &mut input, &mut remote) {
            up.done = true;
        }
        let moved_down = ready!(down.poll_copy(cx, &mut remote, &mut output))?;
        Poll::Ready(Ok(Spliced {
            up: up.moved,
            down: moved_down,
        }))
    })
    .await
}

/// One direction of a splice.
struct Direction {
    /// Read and not yet written; empty with no capacity while the source is idle.
    pending: BytesMut,
    counter: Option<ByteCounter>,
    moved: u64,
    eof: bool,
    /// Written since the last flush.
    unflushed: bool,
    done: bool,
}

impl Direction {
    fn new(counter: ByteCounter) -> Self {
        Self {
            counter: Some(counter),
            ..Self::uncounted()
        }
    }

    fn uncounted() -> Self {
        Self {
            pending: BytesMut::new(),
            counter: None,
            moved: 0,
            eof: false,
            unflushed: false,
            done: false,
        }
    }

    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut R,
        to: &mut W,
    ) -> Poll<io::Result<u64>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        if self.done {
            return Poll::Ready(Ok(self.moved));
        }
        loop {
            while !self.pending.is_empty() {
                let n = ready!(Pin::new(&mut *to).poll_write(cx, &self.pending))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pending.advance(n);
                self.moved += n as u64;
                self.unflushed = true;
            }
            if self.eof {
                ready!(Pin::new(&mut *to).poll_shutdown(cx))?;
                self.done = true;
                self.pending = BytesMut::new();
                return Poll::Ready(Ok(self.moved));
            }
            // Empty: the allocation is reused in place (or taken anew after an idle spell).
            self.pending.clear();
            self.pending.reserve(SPLICE_BUFFER);
            match tokio_util::io::poll_read_buf(Pin::new(&mut *from), cx, &mut self.pending) {
                Poll::Pending => {
                    // Nothing to read and nothing held: give the buffer back while idle.
                    self.pending = BytesMut::new();
                    if self.unflushed {
                        ready!(Pin::new(&mut *to).poll_flush(cx))?;
                        self.unflushed = false;
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Ok(0)) => self.eof = true,
                Poll::Ready(Ok(n)) => {
                    if let Some(counter) = &self.counter {
                        counter.inc_by(n as u64);
                    }
                }
                // A TLS peer gone without close_notify: an ordinary end.
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => self.eof = true,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
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

    #[tokio::test]
    async fn relay_half_closes_when_input_ends_and_ends_with_the_remote() {
        let (remote, mut remote_peer) = tokio::io::duplex(64 * 1024);
        let (input, mut input_peer) = tokio::io::duplex(64 * 1024);
        let (output, mut output_peer) = tokio::io::duplex(1024 * 1024);
        let task = tokio::spawn(relay(remote, input, output));
        let up: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let up2 = up.clone();
        let writer = tokio::spawn(async move {
            input_peer.write_all(&up2).await.unwrap();
            // stdin ends; the relay must keep carrying the remote's bytes.
            drop(input_peer);
        });
        let mut got = Vec::new();
        remote_peer.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, up, "input reaches the remote, then EOF (a half-close)");
        let down: Vec<u8> = (0..500_000u32).map(|i| (i % 241) as u8).collect();
        remote_peer.write_all(&down).await.unwrap();
        drop(remote_peer);
        let spliced = task.await.unwrap().unwrap();
        assert_eq!(
            spliced,
            Spliced {
                up: 300_000,
                down: 500_000
            }
        );
        let mut out = Vec::new();
        output_peer.read_to_end(&mut out).await.unwrap();
        assert_eq!(
            out, down,
            "the remote's bytes after the half-close reach the output"
        );
    }

    #[tokio::test]
    async fn relay_ends_with_the_remote_while_input_stays_open() {
        let (remote, mut remote_peer) = tokio::io::duplex(1024);
        let (input, _input_peer) = tokio::io::duplex(1024);
        let (output, mut output_peer) = tokio::io::duplex(1024);
        let task = tokio::spawn(relay(remote, input, output));
        remote_peer.write_all(b"bye").await.unwrap();
        drop(remote_peer);
        let spliced = tokio::time::timeout(std::time::Duration::from_secs(10), task)
            .await
            .expect("the relay ends when the remote does")
            .unwrap()
            .unwrap();
        assert_eq!(spliced.down, 3);
        let mut out = [0u8; 3];
        output_peer.read_exact(&mut out).await.unwrap();
        assert_eq!(&out, b"bye");
    }

    #[tokio::test]
    async fn an_idle_direction_holds_no_buffer_and_a_busy_one_moves_every_byte() {
        let (mut source_peer, mut source) = tokio::io::duplex(256 * 1024);
        let (mut sink, mut sink_peer) = tokio::io::duplex(256 * 1024);
        let counter = ByteCounter::new(prometheus::IntCounter::new("c", "c").unwrap());
        let mut direction = Direction::new(counter.clone());
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(
            direction
                .poll_copy(&mut cx, &mut source, &mut sink)
                .is_pending()
        );
        assert_eq!(direction.pending.capacity(), 0, "idle: no buffer held");

        let data: Vec<u8> = (0..150_000u32).map(|i| (i % 251) as u8).collect();
        source_peer.write_all(&data).await.unwrap();
        assert!(
            direction
                .poll_copy(&mut cx, &mut source, &mut sink)
                .is_pending()
        );
        assert_eq!(
            direction.pending.capacity(),
            0,
            "drained: the buffer went back"
        );
        let mut got = vec![0; data.len()];
        sink_peer.read_exact(&mut got).await.unwrap();
        assert_eq!(got, data);
        assert_eq!((direction.moved, counter.get()), (150_000, 150_000));

        drop(source_peer);
        assert!(matches!(
            direction.poll_copy(&mut cx, &mut source, &mut sink),
            Poll::Ready(Ok(150_000))
        ));
        let mut rest = Vec::new();
        sink_peer.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "EOF passed on as a shutdown");
    }
}
