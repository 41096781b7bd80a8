//! A listener's connection as the request handlers write to it: plain TCP, or TCP with the
//! TLS session of the HTTPS port in between.

use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

use crate::tls::Session;

/// A listener connection: plain, or with the TLS session its bytes go through.
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// The TLS session, on the HTTPS port.
    pub tls: Option<Session>,
}

impl Conn {
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.tls {
            Some(session) => session.write_all(&mut self.stream, bytes).await,
            None => self.stream.write_all(bytes).await,
        }
    }
}
