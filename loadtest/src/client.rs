//! One SSH login as a load client: russh, certificate authentication, an exec channel.

use std::sync::Arc;
use std::time::Duration;

use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{Certificate, PrivateKey};

/// Where and as whom to log in.
pub struct Target {
    pub addr: String,
    pub user: String,
    pub key: Arc<PrivateKey>,
    pub cert: Certificate,
    pub config: Arc<client::Config>,
}

/// A load client measures the server; it does not verify it (the edge's own tests do).
pub struct AcceptAnyHostKey;

impl client::Handler for AcceptAnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connect or handshake: {0}")]
    Connect(String),
    #[error("authentication refused")]
    Auth,
    #[error("channel: {0}")]
    Channel(String),
    #[error("command exited with {0}")]
    Exit(u32),
    #[error("timed out")]
    Timeout,
}

impl LoadError {
    /// Stable name for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Connect(_) => "connect",
            LoadError::Auth => "auth",
            LoadError::Channel(_) => "channel",
            LoadError::Exit(_) => "exit_status",
            LoadError::Timeout => "timeout",
        }
    }
}

/// How long one login may take before it counts as failed.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn login(t: &Target) -> Result<Handle<AcceptAnyHostKey>, LoadError> {
    let attempt = async {
        let mut handle = client::connect(t.config.clone(), t.addr.as_str(), AcceptAnyHostKey)
            .await
            .map_err(|e| LoadError::Connect(e.to_string()))?;
        let auth = handle
            .authenticate_openssh_cert(t.user.clone(), t.key.clone(), t.cert.clone())
            .await
            .map_err(|e| LoadError::Connect(e.to_string()))?;
        if auth.success() {
            Ok(handle)
        } else {
            Err(LoadError::Auth)
        }
    };
    tokio::time::timeout(LOGIN_TIMEOUT, attempt)
        .await
        .map_err(|_| LoadError::Timeout)?
}

/// Opens a session channel and starts `command`, waiting for the server to accept it.
pub async fn start(
    handle: &Handle<AcceptAnyHostKey>,
    command: &str,
) -> Result<russh::Channel<client::Msg>, LoadError> {
    let mut channel = handle
        .channel_open_session()
        .await
        .map_err(|e| LoadError::Channel(e.to_string()))?;
    channel
        .exec(true, command)
        .await
        .map_err(|e| LoadError::Channel(e.to_string()))?;
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return Ok(channel),
            Some(ChannelMsg::Failure) => {
                return Err(LoadError::Channel("exec refused".into()));
            }
            Some(ChannelMsg::WindowAdjusted { .. }) => {}
            Some(_) => {}
            None => return Err(LoadError::Channel("closed before exec".into())),
        }
    }
}

/// Waits for the command's exit status (output is discarded); 0 is success.
pub async fn finish(mut channel: russh::Channel<client::Msg>) -> Result<(), LoadError> {
    let mut status = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    match status {
        Some(0) => Ok(()),
        Some(code) => Err(LoadError::Exit(code)),
        None => Err(LoadError::Channel("no exit status".into())),
    }
}

pub async fn disconnect(handle: Handle<AcceptAnyHostKey>) {
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "load test done", "en")
        .await;
}
