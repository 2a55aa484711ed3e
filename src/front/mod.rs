//! The public doors: TLS with SNI (front A) and plain SSH (front C).
pub mod ssh;
pub mod tls;
