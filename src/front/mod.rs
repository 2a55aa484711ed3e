//! The public doors: TLS with SNI (front A), TLS with a token preamble (front B) and plain
//! SSH (front C).
pub mod ssh;
pub mod tls;
pub mod token;
