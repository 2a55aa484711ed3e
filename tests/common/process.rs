//! Child processes in tests, shared by the test binaries (included with `#[path]`).

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs a command with a hard timeout so a hang fails the test instead of stalling CI.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("command timed out after {timeout:?}: {cmd:?}");
        }
    }
}
