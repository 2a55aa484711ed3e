//! Connection workers: one single-threaded tokio runtime per core, each connection wholly on one.
//!
//! A terminated session is three tasks per packet's path (the client's russh session, the
//! channel bridge, the backend's russh session) handing each packet to the next. On a
//! work-stealing runtime those tasks wander between threads, and every hand-off that crosses
//! one is a futex wake-up, a cache miss and a cross-thread free. Measured on 2 cores, front C
//! forwarded 1 GiB for 0.82–0.95 CPU s with two work-stealing workers and 0.56–0.58 with one
//! (`benches/compare.sh`, unpinned). Here each accepted connection runs on one worker thread,
//! all its tasks with it (`tokio::spawn` inside lands on the same single-threaded runtime), and
//! connections spread over the workers by how many each holds. The process's main runtime keeps
//! what is not per connection: accept loops, admin endpoint, reloads, the control plane.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The worker runtimes and how many connections each runs now. Dropping it ends the worker
/// threads (and whatever still runs on them): a server run in-process leaves no threads behind.
pub(crate) struct Workers {
    workers: Vec<Worker>,
}

struct Worker {
    handle: tokio::runtime::Handle,
    connections: Arc<AtomicUsize>,
    /// Dropped with the worker: its thread's `block_on` returns and the runtime ends.
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// Counts a connection on its worker while it runs.
struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `count` worker threads (0: one per core this process may use).
    pub(crate) fn start(count: usize) -> std::io::Result<Self> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            std::thread::Builder::new()
                .name(format!("ssh-edge-worker-{i}"))
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(r) => r,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = tx.send(Ok(runtime.handle().clone()));
                    // Runs the connections spawned onto it until the workers are dropped.
                    let _ = runtime.block_on(stopped);
                })?;
            let handle = rx
                .recv()
                .map_err(|_| std::io::Error::other("worker thread ended at start"))??;
            workers.push(Worker {
                handle,
                connections: Arc::new(AtomicUsize::new(0)),
                _stop: stop,
            });
        }
        Ok(Self { workers })
    }

    /// How many worker threads there are.
    pub(crate) fn len(&self) -> usize {
        self.workers.len()
    }

    /// Connections running on each worker now.
    #[cfg(test)]
    pub(crate) fn load(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.connections.load(Ordering::Relaxed))
            .collect()
    }

    /// Runs `connection` on the worker holding the fewest connections. `connection` gets its
    /// sockets registered with that worker's reactor by creating them there (see
    /// [`crate::edge`]'s accept loop: the accepted stream crosses as a std socket).
    pub(crate) fn spawn<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let Some(worker) = self
            .workers
            .iter()
            .min_by_key(|w| w.connections.load(Ordering::Relaxed))
        else {
            return;
        };
        worker.connections.fetch_add(1, Ordering::Relaxed);
        let running = Running(worker.connections.clone());
        worker.handle.spawn(async move {
            let _running = running;
            connection.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connections_go_to_the_least_loaded_worker_and_stay_on_its_thread() {
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let done = done_tx.clone();
            let mut release = release_rx.clone();
            workers.spawn(async move {
                let first = std::thread::current().name().map(str::to_string);
                // A task spawned by the connection runs on the same thread.
                let child =
                    tokio::spawn(async { std::thread::current().name().map(str::to_string) })
                        .await
                        .unwrap();
                let _ = release.wait_for(|r| *r).await;
                let last = std::thread::current().name().map(str::to_string);
                let _ = done.send((first, child, last));
            });
        }
        wait_load(&workers, &[2, 2]);
        release_tx.send(true).unwrap();
        for _ in 0..4 {
            let (first, child, last) = done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
            let first = first.expect("a named worker thread");
            assert!(first.starts_with("ssh-edge-worker-"), "{first}");
            assert_eq!(
                Some(&first),
                child.as_ref(),
                "spawned tasks stay on the worker"
            );
            assert_eq!(Some(&first), last.as_ref(), "a connection never moves");
        }
        wait_load(&workers, &[0, 0]);
    }

    /// Waits (at most 10 s, else fails) until each worker runs `want` connections.
    fn wait_load(workers: &Workers, want: &[usize]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while workers.load() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "load {:?}, want {want:?}",
                workers.load()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_accepted_socket_moves_to_a_worker_and_serves_there() {
        let workers = Workers::start(1).unwrap();
        let main = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        main.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let client = tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(b"ping").await.unwrap();
                let mut got = [0u8; 4];
                s.read_exact(&mut got).await.unwrap();
                got
            });
            let (stream, _) = listener.accept().await.unwrap();
            let std = stream.into_std().unwrap();
            workers.spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut s = tokio::net::TcpStream::from_std(std).unwrap();
                let mut got = [0u8; 4];
                s.read_exact(&mut got).await.unwrap();
                assert_eq!(&got, b"ping");
                s.write_all(b"pong").await.unwrap();
            });
            let got = tokio::time::timeout(Duration::from_secs(10), client)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&got, b"pong");
        });
    }
}
