//! End-to-end tests: real OpenSSH `ssh`/`scp`/`sftp`/`ssh-keygen` and a real `sshd` backend on
//! loopback, with the edge in between. One binary, one module per area.

#[path = "common/process.rs"]
mod process;

#[path = "common/cert_login.rs"]
mod cert_login;

#[path = "common/children.rs"]
mod children;

#[path = "e2e/world.rs"]
mod world;

#[path = "e2e/session.rs"]
mod session;

#[path = "e2e/lifecycle.rs"]
mod lifecycle;

#[path = "e2e/transfer.rs"]
mod transfer;

#[path = "e2e/certificates.rs"]
mod certificates;

#[path = "e2e/failures.rs"]
mod failures;

#[path = "e2e/token.rs"]
mod token;

#[path = "e2e/issuer.rs"]
mod issuer;

#[path = "e2e/activation.rs"]
mod activation;

#[path = "e2e/helper_setup.rs"]
mod helper_setup;

#[path = "e2e/forwarding.rs"]
mod forwarding;

#[path = "e2e/multiplex.rs"]
mod multiplex;

#[path = "e2e/stall.rs"]
mod stall;

#[path = "e2e/upstream_mux.rs"]
mod upstream_mux;

#[path = "e2e/dns.rs"]
mod dns;

#[path = "e2e/host_certs.rs"]
mod host_certs;
