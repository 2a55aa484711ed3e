//! Child processes in tests, shared by the test binaries (included with `#[path]`). Every wait
//! on a child is bounded: a hang fails the test instead of stalling CI.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Runs a command with a hard timeout so a hang fails the test instead of stalling CI.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    wait_output(child, timeout)
}

/// Waits for a spawned child's output (its stdout/stderr should be piped), killing it and
/// failing the test after `timeout`.
pub fn wait_output(child: Child, timeout: Duration) -> Output {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("process {id} did not finish within {timeout:?}");
        }
    }
}

/// Polls `child` until it exits, failing the test after `timeout` (the child is left to its
/// owner's `Drop`, which kills it).
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "process {} did not exit within {timeout:?}",
            child.id()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running client (`ssh … 'echo ready; read line; echo "got $line"'`) whose stdin the test
/// holds and whose stdout arrives line by line: it shows a session is open *now* (a line it
/// printed was read) and still open *later* (a line sent after an event comes back), with no
/// sleep standing in for either.
pub struct Live {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

/// The remote command a [`Live`] session runs: says `ready`, then echoes one line back.
pub const ECHO_ONE_LINE: &str = "echo ready; read line; echo \"got $line\"";

impl Live {
    /// Spawns `cmd` with piped stdin and stdout (stderr is kept for failure messages).
    pub fn spawn(cmd: &mut Command) -> Live {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Live {
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
        }
    }

    /// The next stdout line, which must be `want` and arrive within `timeout`.
    pub fn expect_line(&mut self, want: &str, timeout: Duration) {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => assert_eq!(line, want, "unexpected line from the session"),
            Err(RecvTimeoutError::Timeout) => {
                panic!("no line {want:?} within {timeout:?}: {}", self.stderr_now())
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the session ended before {want:?}: {}", self.stderr_now())
            }
        }
    }

    /// Sends one line and closes stdin.
    pub fn send_last(&mut self, line: &str) {
        let mut stdin = self.stdin.take().expect("stdin still open");
        writeln!(stdin, "{line}").expect("the session still reads its stdin");
    }

    /// Waits for the client to exit (failing after `timeout`); its status, the stdout lines
    /// not read yet, and its stderr.
    pub fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<String>, String) {
        drop(self.stdin.take());
        let child = self.child.take().expect("not finished yet");
        let out = wait_output(child, timeout);
        // The reader thread ends at stdout's EOF, which the exit has caused.
        let mut rest = Vec::new();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(10)) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => panic!("stdout still open after the exit"),
            }
        }
        (
            out.status,
            rest,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Stderr so far is only readable once the child is gone: kill it and read.
    fn stderr_now(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        let _ = child.kill();
        let out = wait_output(child, Duration::from_secs(10));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a helper command (ssh-keygen, ssh, the edge's own subcommands) may take in a
/// test before it counts as hung.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// `output()` and `status()` bounded by [`COMMAND_TIMEOUT`] (stdin is null): a hang fails
/// the test.
pub trait Bounded {
    fn output_bounded(&mut self) -> Output;
    fn status_bounded(&mut self) -> ExitStatus;
}

impl Bounded for Command {
    fn output_bounded(&mut self) -> Output {
        run_with_timeout(self, COMMAND_TIMEOUT)
    }

    fn status_bounded(&mut self) -> ExitStatus {
        run_with_timeout(self, COMMAND_TIMEOUT).status
    }
}

/// Fails the test for a server that never started listening on `what`: stops the child and
/// shows its exit status and its log (a bind error, say), so the failure explains itself.
pub fn never_listened(mut child: Child, what: &str, log: &std::path::Path) -> ! {
    let status = child.try_wait();
    let _ = child.kill();
    let _ = child.wait();
    panic!(
        "{what} did not start listening (process: {status:?}); its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}
