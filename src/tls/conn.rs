//! A connection as the request handlers use it: plain TCP, or TCP with a TLS session in
//! between. Listeners on the shards, sources on the ingest core and relays pulling an upstream
//! all go through it, so the protocol code is the same over both.

use std::io;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::server::UnbufferedServerConnection;

use super::session::{Session, Side};
use crate::http::{read_request, ReadSome, Request, RequestError};

/// A connection: plain, or with the TLS session its bytes go through (the server end by
/// default, the client end for a relay).
pub struct Conn<C = UnbufferedServerConnection> {
    /// The socket.
    pub stream: TcpStream,
    /// The TLS session, on a TLS port or to an `https://` upstream.
    pub tls: Option<Session<C>>,
}

/// A connection to an upstream: plain, or the client end of TLS.
pub type ClientConn = Conn<UnbufferedClientConnection>;

impl<C: Side> Conn<C> {
    /// Sends `bytes`, encrypted when the connection has a TLS session.
    pub async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.tls {
            Some(session) => session.write_all(&mut self.stream, bytes).await,
            None => self.stream.write_all(bytes).await,
        }
    }

    /// Reads (decrypted) bytes; 0 at the end of the stream. Safe to cancel between reads.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(session) => session.read(&mut self.stream, buf).await,
            None => self.stream.read(buf).await,
        }
    }

    /// Reads a request head within `max_bytes` and `timeout`, as on a plain socket.
    pub async fn read_request(
        &mut self,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<Request, RequestError> {
        read_request(self, max_bytes, timeout).await
    }
}

impl<C: Side> ReadSome for Conn<C> {
    async fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf).await
    }
}
