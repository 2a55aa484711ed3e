//! Who may come in: certificate policy (pure).
pub mod cert_policy;
