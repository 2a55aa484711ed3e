//! Stream wrappers of the admission pipeline, beneath TLS and russh.
//!
//! - [`GraceStream`]: the login-grace deadline on the socket itself. Until the connection's
//!   [`Ticket`] says "authenticated", every read and write first checks the deadline and fails
//!   with `TimedOut` once it has passed, so whatever layer is waiting (a TLS handshake, a token
//!   preamble, russh in the middle of a key exchange) gets an error and the connection ends.
//!   A watchdog that *asks* russh to disconnect is not enough: russh reads such requests only
//!   between key exchanges. After authentication the check is one pointer test per poll.
//! - [`Prefixed`]: replays bytes already read (past a PROXY header, or the byte that told the
//!   fronts apart) before reading on.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::Ticket;

/// A stream with the login-grace deadline on it (see module docs).
pub(crate) struct GraceStream<S> {
    inner: S,
    ticket: Ticket,
    /// `None` once authenticated: the deadline no longer applies.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<S> GraceStream<S> {
    pub(crate) fn new(inner: S, ticket: Ticket, deadline: Instant) -> Self {
        Self {
            inner,
            ticket,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// `Err(TimedOut)` once the deadline passed before authentication; registers the waker
    /// so a pending read or write is woken at the deadline.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let Some(deadline) = &mut self.deadline else {
            return Ok(());
        };
        if self.ticket.is_authenticated() {
            self.deadline = None;
            return Ok(());
        }
        if deadline.as_mut().poll(cx).is_ready() {
            self.ticket.mark_expired();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "login grace time exceeded",
            ));
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for GraceStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GraceStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
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
        self.check(cx)?;
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A stream that yields `prefix` before reading from the inner stream.
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                // Give the memory back: this wrapper lives as long as the connection.
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_cut_at_the_deadline() {
        let (near, _far) = tokio::io::duplex(64);
        let ticket = Ticket::new();
        let mut s = GraceStream::new(
            near,
            ticket.clone(),
            Instant::now() + Duration::from_secs(5),
        );
        let recorded = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = recorded.clone();
        ticket.on_expiry(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let mut buf = [0u8; 8];
        let started = Instant::now();
        let err = s.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        assert!(ticket.expired());
        // Recorded when the cut was reported, before anyone could close the stream; once.
        assert_eq!(recorded.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Writes fail too once it has passed.
        assert!(s.write_all(b"x").await.is_err());
        assert_eq!(recorded.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_authenticated_stream_outlives_the_deadline() {
        let (near, mut far) = tokio::io::duplex(64);
        let ticket = Ticket::new();
        let mut s = GraceStream::new(
            near,
            ticket.clone(),
            Instant::now() + Duration::from_secs(5),
        );
        ticket.on_expiry(|| panic!("an authenticated stream was recorded as cut"));
        ticket.authenticated();
        tokio::time::sleep(Duration::from_secs(60)).await;
        far.write_all(b"late").await.unwrap();
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"late");
        assert!(!ticket.expired());
    }

    #[tokio::test]
    async fn prefixed_replays_then_reads_on() {
        let inner: &[u8] = b" world";
        let mut s = Prefixed::new(b"hello".to_vec(), inner);
        let mut all = String::new();
        s.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
        // A one-byte buffer takes the prefix a byte at a time.
        let mut s = Prefixed::new(b"ab".to_vec(), &b"c"[..]);
        let mut one = [0u8; 1];
        let mut got = Vec::new();
        while s.read(&mut one).await.unwrap() == 1 {
            got.push(one[0]);
        }
        assert_eq!(got, b"abc");
    }
}
