//! The binary's signals onto the library's lifecycle: SIGHUP reloads, SIGTERM or Ctrl-C
//! drains and stops (`ssh_edge::server`).

use std::future::Future;

use anyhow::Context as _;
use ssh_edge::server::Server;
use tokio::signal::unix::{SignalKind, signal};

/// Spawns the SIGHUP → reload task; returns the future that completes on SIGTERM or Ctrl-C.
pub fn wire(server: &Server) -> anyhow::Result<impl Future<Output = ()> + use<>> {
    let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
    let reloader = server.reloader();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            reloader.reload();
        }
    });
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    })
}
