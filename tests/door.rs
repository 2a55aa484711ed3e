//! The public door, with the real `ssh-edge run` binary: the login grace enforced on the socket
//! under a flood, pre-auth caps per source, PROXY protocol behind a real HAProxy, the admin
//! bearer token, the open-files limit, and `ssh-edge sessions` across three replicas found in
//! DNS. Real OpenSSH `ssh` and `sshd` throughout.

#[path = "common/process.rs"]
mod process;

#[path = "common/children.rs"]
mod children;

#[path = "door/harness.rs"]
mod harness;

#[path = "door/grace.rs"]
mod grace;

#[path = "door/limits.rs"]
mod limits;

#[path = "door/proxy.rs"]
mod proxy;

#[path = "door/admin.rs"]
mod admin;

#[path = "door/reload.rs"]
mod reload;

#[path = "door/sessions.rs"]
mod sessions;

#[path = "door/lifetimes.rs"]
mod lifetimes;

#[path = "door/fanout.rs"]
mod fanout;

#[path = "door/audit.rs"]
mod audit;

#[path = "door/requests.rs"]
mod requests;

#[path = "door/logs.rs"]
mod logs;

#[path = "door/identity.rs"]
mod identity;
