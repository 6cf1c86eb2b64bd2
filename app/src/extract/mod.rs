//! Request extractors the domains share, below every domain: nothing here imports a domain,
//! `state` or `http`.

pub mod client_ip;

pub use client_ip::ClientIp;
