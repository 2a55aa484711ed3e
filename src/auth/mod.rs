//! Who may come in, and which backends are who they say: certificate policy, token
//! verification and backend host-certificate checks (pure).
pub(crate) mod cert_policy;
pub mod host_ca;
pub mod token;
