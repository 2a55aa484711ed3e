//! Who may come in: certificate policy and token verification (pure).
pub mod cert_policy;
pub mod token;
