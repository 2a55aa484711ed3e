//! A stalled channel must not stall its connection. Two forwarded sockets on one ControlMaster
//! connection are jammed — one whose local reader never reads while the backend service pours
//! data in, one whose backend service never reads while the client pours data out — and the
//! same connection must still run commands. Afterwards the jammed download is drained and
//! checked byte for byte, so flow control lost nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::world::*;

/// The byte at stream offset `i`: a pattern with a long period, so a lost, repeated or
/// reordered chunk shows up.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Writes the pattern into `out` for stream offsets `start..start + out.len()`.
fn fill(out: &mut [u8], start: u64) {
    for (k, b) in out.iter_mut().enumerate() {
        *b = pattern(start + k as u64);
    }
}

/// Something that counts bytes and stops when dropped.
struct Pump {
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}
impl Drop for Pump {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}
impl Pump {
    fn new() -> Pump {
        Pump {
            written: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Writes the pattern into `stream` until it fails, the pump is dropped, or 2 GiB.
    fn run(&self, stream: TcpStream) {
        pour(stream, self.written.clone(), self.stop.clone());
    }

    /// Waits until the count has not moved for two seconds: the stream is jammed.
    fn wait_jammed(&self, what: &str) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = u64::MAX;
        let mut still_since = Instant::now();
        while Instant::now() < deadline {
            let now = self.written.load(Ordering::SeqCst);
            if now != last {
                last = now;
                still_since = Instant::now();
            } else if now > 0 && still_since.elapsed() > Duration::from_secs(2) {
                return now;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{what} never jammed (flow control missing?): {last} bytes written");
    }
}

/// Writes the pattern into `stream` on a thread until it fails, `stop` is set, or 2 GiB.
fn pour(mut stream: TcpStream, written: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
        let mut chunk = vec![0u8; 64 * 1024];
        let mut offset = 0u64;
        while !stop.load(Ordering::SeqCst) && offset < 2 << 30 {
            fill(&mut chunk, offset);
            let mut sent = 0;
            while sent < chunk.len() && !stop.load(Ordering::SeqCst) {
                match stream.write(&chunk[sent..]) {
                    Ok(0) => return,
                    Ok(n) => {
                        sent += n;
                        written.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
            offset += sent as u64;
        }
    });
}

/// A service "inside the workload" that pours the pattern into every connection.
fn firehose(pump: &Pump) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (written, stop) = (pump.written.clone(), pump.stop.clone());
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            pour(stream, written, stop);
        }
    });
    port
}

/// A service "inside the workload" that accepts and never reads.
fn black_hole() -> (u16, Arc<std::sync::Mutex<Vec<TcpStream>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            keep.lock().unwrap().push(stream);
        }
    });
    (port, held)
}

fn wait_connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("local forward {port}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Reads `want` bytes from `stream` (20 s per read at most) and checks each against the
/// pattern from offset 0.
fn drain_pattern(stream: &mut TcpStream, want: u64, what: &str) {
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut got = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while got < want {
        let n = stream
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("drain the jammed {what} at {got} bytes: {e}"));
        assert!(n > 0, "the jammed {what} ended early at {got} bytes");
        for (k, b) in buf[..n].iter().enumerate() {
            let at = got + k as u64;
            assert_eq!(*b, pattern(at), "byte {at} of the jammed {what} differs");
        }
        got += n as u64;
    }
}

#[test]
fn a_jammed_forward_does_not_stall_the_shell_on_the_same_connection() {
    let w = World::start();
    let control = w.lab.path("stall.sock");
    let args = w.ssh_args_muxed(Via::PlainSsh, HOST, &control);
    let (opts, dest) = args.split_at(args.len() - 1);
    // `ssh <options> <before> <dest> <after>`
    let run = |before: &[&str], after: &[&str], timeout: u64| {
        run_with_timeout(
            Command::new("ssh")
                .args(opts)
                .args(before)
                .args(dest)
                .args(after),
            Duration::from_secs(timeout),
        )
    };
    let out = run(&[], &["echo first"], 60);
    assert_eq!(stdout(&out), "first\n", "{}", stderr(&out));

    // Two forwards on the master connection.
    let download = Pump::new();
    let firehose_port = firehose(&download);
    let (sink_port, held) = black_hole();
    let (down_local, up_local) = (ssh_edge::lab::free_port(), ssh_edge::lab::free_port());
    for (local, remote) in [(down_local, firehose_port), (up_local, sink_port)] {
        let spec = format!("{local}:127.0.0.1:{remote}");
        let out = run(&["-O", "forward", "-L", &spec], &[], 30);
        assert!(out.status.success(), "-O forward: {}", stderr(&out));
    }

    // Jam the download: connect and never read while the backend service writes.
    let mut jammed_reader = wait_connect(down_local);
    let poured_down = download.wait_jammed("the download");
    // Jam the upload: write until the backend service (which never reads) pushes back.
    let upload = Pump::new();
    upload.run(wait_connect(up_local));
    let poured_up = upload.wait_jammed("the upload");

    eprintln!("jammed: {poured_down} bytes down, {poured_up} bytes up");
    // The same connection still runs commands and moves data. The bound is a hang guard, not
    // a speed target: it sits below the edge's 15 s backend reply timeout, which would
    // otherwise let a stalled connection limp through.
    for i in 0..3 {
        let t = Instant::now();
        let out = run(&[], &[&format!("echo alive {i}")], 10);
        eprintln!("alive {i} after {:?}", t.elapsed());
        assert_eq!(
            stdout(&out),
            format!("alive {i}\n"),
            "the shell stalled behind a jammed channel: {}",
            stderr(&out)
        );
    }
    let out = run(&[], &["head -c 3000000 /dev/zero | wc -c"], 10);
    assert_eq!(stdout(&out).trim(), "3000000", "{}", stderr(&out));
    // Meanwhile neither jammed stream moved: flow control held them, nothing was dropped to
    // make room.
    assert_eq!(
        download.written.load(Ordering::SeqCst),
        poured_down,
        "the jammed download moved while nobody read it"
    );
    assert_eq!(
        upload.written.load(Ordering::SeqCst),
        poured_up,
        "the jammed upload moved while the service did not read"
    );

    // Drain the jammed download and check every byte, beyond what was buffered when it jammed.
    drain_pattern(&mut jammed_reader, poured_down + (4 << 20), "download");
    // Drain the jammed upload at the service: every byte the client wrote arrives, in order,
    // and the upload moves again.
    let mut service = held
        .lock()
        .unwrap()
        .pop()
        .expect("the black hole accepted the upload");
    drain_pattern(&mut service, poured_up + (4 << 20), "upload");
    let _ = Command::new("ssh")
        .args(opts)
        .args(["-O", "exit"])
        .args(dest)
        .output_bounded();
}
