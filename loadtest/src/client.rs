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

/// Why a session failed; [`LoadError::kind`] groups them in the report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connect or handshake: {0}")]
    Connect(String),
    #[error("authentication refused{0}")]
    Auth(String),
    #[error("channel: {0}")]
    Channel(String),
    #[error("command exited with {0}")]
    Exit(u32),
    #[error("timed out")]
    Timeout,
    #[error("the far end's check of the data sent disagrees: {0}")]
    Corrupt(String),
    #[error("the server closed a held session")]
    Closed,
}

impl LoadError {
    /// Stable name for the report.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::Connect(_) => "connect",
            LoadError::Auth(_) => "auth",
            LoadError::Channel(_) => "channel",
            LoadError::Exit(_) => "exit_status",
            LoadError::Timeout => "timeout",
            LoadError::Corrupt(_) => "corrupt",
            LoadError::Closed => "closed",
        }
    }

    /// A short, groupable reason ("connection refused", "exit 1"): the detail without what
    /// varies between occurrences (OS error numbers, counts), lower case, at most 60 chars.
    pub fn reason(&self) -> String {
        let detail = match self {
            LoadError::Connect(m) | LoadError::Channel(m) => m.clone(),
            LoadError::Exit(code) => format!("exit {code}"),
            LoadError::Corrupt(_) => "mismatch".into(),
            LoadError::Auth(_) | LoadError::Timeout | LoadError::Closed => {
                return self.kind().to_string();
            }
        };
        short_reason(&detail)
    }
}

/// "IO error: Connection refused (os error 111)" → "io error: connection refused"; "No common
/// Cipher algorithm - ours: […]" → "no common cipher algorithm".
pub fn short_reason(message: &str) -> String {
    let cut = [" (os error ", " - "]
        .iter()
        .filter_map(|m| message.find(m))
        .min()
        .unwrap_or(message.len());
    let trimmed = &message[..cut];
    trimmed.trim().to_lowercase().chars().take(60).collect()
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
        match auth {
            client::AuthResult::Success => Ok(handle),
            client::AuthResult::Failure {
                remaining_methods, ..
            } => Err(LoadError::Auth(format!(
                " (the server offers: {remaining_methods:?})"
            ))),
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

/// At most this much of a command's output is kept (the rest is read and dropped).
pub const MAX_OUTPUT: usize = 4096;

/// Waits for the command's exit status; 0 is success. Returns the start of its output.
pub async fn finish(mut channel: russh::Channel<client::Msg>) -> Result<Vec<u8>, LoadError> {
    let mut status = None;
    let mut output = Vec::new();
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            ChannelMsg::Data { data } => {
                let room = MAX_OUTPUT.saturating_sub(output.len());
                output.extend_from_slice(&data[..data.len().min(room)]);
            }
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    match status {
        Some(0) => Ok(output),
        Some(code) => Err(LoadError::Exit(code)),
        None => Err(LoadError::Channel("no exit status".into())),
    }
}

pub async fn disconnect(handle: Handle<AcceptAnyHostKey>) {
    let _ = handle
        .disconnect(russh::Disconnect::ByApplication, "load test done", "en")
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_what_varies() {
        let e = LoadError::Connect("IO error: Connection refused (os error 111)".into());
        assert_eq!(e.reason(), "io error: connection refused");
        let e = LoadError::Connect("No common Cipher algorithm - ours: [a], theirs: [b]".into());
        assert_eq!(e.reason(), "no common cipher algorithm");
        assert_eq!(LoadError::Timeout.reason(), "timeout");
        assert_eq!(LoadError::Exit(3).reason(), "exit 3");
        assert_eq!(short_reason(&"x".repeat(100)).len(), 60);
    }
}
