//! stdin and stdout for the client-side relay (`ssh-edge connect`), driven by tokio's reactor
//! when they are pipes or sockets.
//!
//! `tokio::io::stdin()`/`stdout()` run every read and write on the blocking thread pool: each
//! chunk is a hand-off to another thread and back. ssh gives a ProxyCommand pipes (or a
//! socket), which epoll can watch, so the relay reads and writes them non-blocking from its
//! own thread (tokio's pipe and Unix-socket types, on a duplicate of the descriptor). Anything
//! else (a regular file, a terminal) goes through tokio's stdio. The descriptor's original
//! flags come back when the relay is done: the file description may be shared (a terminal).

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{FileType, OFlags, fcntl_getfl, fcntl_setfl, fstat};
use tokio::io::{AsyncRead, AsyncWrite};

/// Puts a descriptor's flags back when dropped.
pub(crate) struct RestoreFlags(OwnedFd, OFlags);

impl Drop for RestoreFlags {
    fn drop(&mut self) {
        let _ = fcntl_setfl(&self.0, self.1);
    }
}

enum Kind {
    Pipe,
    Socket,
    Other,
}

/// A duplicate of `fd` (widened if a pipe), what it is, and the guard restoring its flags.
fn duplicate(fd: impl AsFd) -> Option<(OwnedFd, Kind, RestoreFlags)> {
    let owned = fd.as_fd().try_clone_to_owned().ok()?;
    let kind = match FileType::from_raw_mode(fstat(&owned).ok()?.st_mode) {
        FileType::Fifo => Kind::Pipe,
        FileType::Socket => Kind::Socket,
        _ => Kind::Other,
    };
    if matches!(kind, Kind::Pipe) {
        widen(&owned);
    }
    let restore = RestoreFlags(owned.try_clone().ok()?, fcntl_getfl(&owned).ok()?);
    Some((owned, kind, restore))
}

/// Pipe capacity asked for on the relay's pipes (the kernel's default is 64 KiB).
const PIPE_SIZE: usize = 1024 * 1024;

/// Widens a pipe so its writer (ssh) blocks less often and one read takes more. Best effort:
/// an unprivileged process is capped by /proc/sys/fs/pipe-max-size (1 MiB by default).
fn widen(pipe: &OwnedFd) {
    let _ = rustix::pipe::fcntl_setpipe_size(pipe, PIPE_SIZE);
}

fn socket(owned: OwnedFd) -> Option<tokio::net::UnixStream> {
    let std = std::os::unix::net::UnixStream::from(owned);
    std.set_nonblocking(true).ok()?;
    tokio::net::UnixStream::from_std(std).ok()
}

/// The process's stdin for reading on the reactor (see module docs). Call inside a runtime.
pub(crate) fn stdin() -> (Box<dyn AsyncRead + Unpin + Send>, Option<RestoreFlags>) {
    if let Some((owned, kind, restore)) = duplicate(std::io::stdin()) {
        let reader: Option<Box<dyn AsyncRead + Unpin + Send>> = match kind {
            Kind::Pipe => tokio::net::unix::pipe::Receiver::from_owned_fd(owned)
                .ok()
                .map(|r| Box::new(r) as _),
            Kind::Socket => socket(owned).map(|s| Box::new(s) as _),
            Kind::Other => None,
        };
        if let Some(reader) = reader {
            return (reader, Some(restore));
        }
    }
    (Box::new(tokio::io::stdin()), None)
}

/// The process's stdout for writing on the reactor (see module docs). Call inside a runtime.
pub(crate) fn stdout() -> (Box<dyn AsyncWrite + Unpin + Send>, Option<RestoreFlags>) {
    if let Some((owned, kind, restore)) = duplicate(std::io::stdout()) {
        let writer: Option<Box<dyn AsyncWrite + Unpin + Send>> = match kind {
            Kind::Pipe => tokio::net::unix::pipe::Sender::from_owned_fd(owned)
                .ok()
                .map(|w| Box::new(w) as _),
            Kind::Socket => socket(owned).map(|s| Box::new(s) as _),
            Kind::Other => None,
        };
        if let Some(writer) = writer {
            return (writer, Some(restore));
        }
    }
    (Box::new(tokio::io::stdout()), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_come_back_and_only_pipes_and_sockets_count() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (owned, kind, restore) = duplicate(&a).unwrap();
        assert!(matches!(kind, Kind::Socket));
        fcntl_setfl(&owned, OFlags::NONBLOCK).unwrap();
        assert!(fcntl_getfl(&a).unwrap().contains(OFlags::NONBLOCK));
        drop(restore);
        assert!(!fcntl_getfl(&a).unwrap().contains(OFlags::NONBLOCK));
        let (r, _w) = rustix::pipe::pipe().unwrap();
        assert!(matches!(duplicate(&r).unwrap().1, Kind::Pipe));
        let file = tempfile::tempfile().unwrap();
        assert!(matches!(duplicate(&file).unwrap().1, Kind::Other));
    }
}
