//! A listener's connection as the request handlers write to it: plain TCP, or TCP with the
//! TLS session of the HTTPS port in between (the type is shared with the ingest core).

pub use crate::tls::Conn;
