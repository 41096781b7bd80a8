//! One TLS connection, driven through rustls' unbuffered API so this code decides where every
//! ciphertext byte goes.
//!
//! Two phases. On the shard's async task: the handshake and the request head ([`Session::accept`],
//! bounded by the header timeout as a plain request is), then responses ([`Session::write_all`]).
//! In the fan-out, synchronously: [`Session::seal_and_send`] encrypts a chunk into the shard's
//! cipher buffer and sends it with one non-blocking `send`; whatever the socket did not take
//! stays in this connection's own buffer ([`Session::send_pending`] resumes from it), which is
//! allocated on the first short send and then reused, and is bounded by the plaintext the
//! fan-out encrypts at once. This is the record path a kernel TLS offload would replace.
//!
//! rustls 0.23 still seals each record into a short-lived buffer of its own before copying it
//! into ours (one allocation per record, inside the library; a chunk is one record). Sealing in
//! place, with the traffic secrets extracted as for kTLS, would remove that too.

use std::io::{self, ErrorKind, Write};
use std::net::TcpStream as StdTcpStream;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, UnbufferedStatus,
};

use crate::http::{parse_head_within, Request, RequestError};

/// Room for one whole TLS record as it arrives (16 KiB of payload plus the most expansion
/// the protocol allows).
const RECORD_ROOM: usize = 16 * 1024 + 2048;

/// Plaintext bytes per record (the TLS maximum).
const MAX_FRAGMENT: usize = 16 * 1024;

/// Bytes a record may add to its plaintext (header, explicit nonce, tag, content type), with
/// room to spare.
const RECORD_OVERHEAD: usize = 64;

/// Most ciphertext `len` plaintext bytes can become.
pub fn sealed_len(len: usize) -> usize {
    len + len.div_ceil(MAX_FRAGMENT).max(1) * RECORD_OVERHEAD
}

/// What a handshake needs next.
pub enum Step {
    /// Call [`Handshake::step`] again.
    Again,
    /// Send [`Handshake::to_send`], then call [`Handshake::sent`].
    Transmit,
    /// Read from the peer into [`Handshake::input_room`], then call [`Handshake::received`].
    NeedInput,
    /// The handshake is done and a whole request head arrived.
    Done(Request),
    /// The handshake is done and the first bytes are no HTTP request but one bare word on a
    /// line (a Shoutcast source's password): all of them so far, for the source protocol.
    NotHttp(Vec<u8>),
}

/// The first thing a peer sent over TLS: a request head, or (`Err`) bytes that are no HTTP
/// request at all.
type Head = Result<Request, Vec<u8>>;

/// The head in `plain`, once whole; a password line instead of a request is a head too.
fn first_head(plain: &[u8], max_bytes: usize) -> Result<Option<Head>, RequestError> {
    match parse_head_within(plain, max_bytes) {
        Ok(head) => Ok(head.map(Ok)),
        Err(RequestError::NotHttp(raw)) => Ok(Some(Err(raw))),
        Err(e) => Err(e),
    }
}

impl From<Head> for Step {
    fn from(head: Head) -> Step {
        match head {
            Ok(request) => Step::Done(request),
            Err(raw) => Step::NotHttp(raw),
        }
    }
}

/// A handshake and request head in progress, without I/O of its own: the caller moves the
/// bytes (the shard's async task, or a fuzz target feeding arbitrary first bytes).
pub struct Handshake {
    /// rustls' state of the connection.
    conn: UnbufferedServerConnection,
    /// Bytes from the peer, `incoming[..filled]` not yet processed.
    incoming: Vec<u8>,
    /// Bytes of `incoming` in use.
    filled: usize,
    /// Handshake records to send, `outgoing[..queued]`.
    outgoing: Vec<u8>,
    /// Bytes of `outgoing` in use.
    queued: usize,
    /// Decrypted request bytes so far.
    plain: Vec<u8>,
    /// Longest request head allowed.
    max_bytes: usize,
    /// The head, once whole, while handshake records still wait to be sent.
    head: Option<Head>,
}

impl Handshake {
    /// A new server-side handshake under `config`.
    pub fn new(config: Arc<rustls::ServerConfig>, max_bytes: usize) -> Result<Self, RequestError> {
        Ok(Self {
            conn: UnbufferedServerConnection::new(config).map_err(tls_error)?,
            incoming: vec![0u8; RECORD_ROOM],
            filled: 0,
            outgoing: Vec::new(),
            queued: 0,
            plain: Vec::new(),
            max_bytes,
            head: None,
        })
    }

    /// Processes what arrived so far, up to the next thing the caller must do.
    pub fn step(&mut self) -> Result<Step, RequestError> {
        if let Some(head) = self.head.take() {
            if self.queued == 0 {
                return Ok(head.into());
            }
            self.head = Some(head);
            return Ok(Step::Transmit);
        }
        let UnbufferedStatus { mut discard, state } = self
            .conn
            .process_tls_records(&mut self.incoming[..self.filled]);
        let step = match state.map_err(tls_error)? {
            ConnectionState::ReadTraffic(mut traffic) => {
                let mut head = None;
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(tls_error)?;
                    discard += record.discard;
                    self.plain.extend_from_slice(record.payload);
                    // A source's audio may follow its head at once: the records after the
                    // head stay undecrypted for the session to read.
                    if let Some(first) = first_head(&self.plain, self.max_bytes)? {
                        head = Some(first);
                        break;
                    }
                }
                match head {
                    Some(first) if self.queued == 0 => first.into(),
                    // rustls asks to transmit the handshake's last records (session tickets)
                    // only once every buffered record is read: they go out before the answer.
                    Some(first) => {
                        self.head = Some(first);
                        Step::Transmit
                    }
                    None => Step::Again,
                }
            }
            ConnectionState::EncodeTlsData(mut data) => {
                encode(&mut data, &mut self.outgoing, &mut self.queued)?;
                Step::Again
            }
            ConnectionState::TransmitTlsData(data) => {
                // The records are in `outgoing`; the caller sends them before the next step.
                data.done();
                Step::Transmit
            }
            ConnectionState::BlockedHandshake => Step::NeedInput,
            ConnectionState::WriteTraffic(_) => match first_head(&self.plain, self.max_bytes)? {
                Some(first) => first.into(),
                None => Step::NeedInput,
            },
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                return Err(RequestError::Closed)
            }
            // Early data is not enabled; anything else is a state this code does not know.
            other => return Err(tls_error(format!("unexpected state {other:?}")).into()),
        };
        if discard > 0 {
            self.incoming.copy_within(discard..self.filled, 0);
            self.filled -= discard;
        }
        Ok(step)
    }

    /// Handshake records to send now.
    pub fn to_send(&self) -> &[u8] {
        &self.outgoing[..self.queued]
    }

    /// The records of [`to_send`](Self::to_send) went out.
    pub fn sent(&mut self) {
        self.queued = 0;
    }

    /// Where the next bytes from the peer go.
    pub fn input_room(&mut self) -> Result<&mut [u8], RequestError> {
        if self.filled == self.incoming.len() {
            return Err(tls_error("record larger than the protocol allows").into());
        }
        Ok(&mut self.incoming[self.filled..])
    }

    /// `n` bytes were read into [`input_room`](Self::input_room).
    pub fn received(&mut self, n: usize) {
        self.filled = (self.filled + n).min(self.incoming.len());
    }

    /// The connection, for the response and the stream.
    pub fn into_session(self) -> Session {
        let mut session = Session::new(self.conn);
        if self.filled > 0 {
            // Records that came after the head (a source's first audio): only their bytes are
            // kept, so a listener holds no receive room.
            session.incoming = self.incoming[..self.filled].to_vec();
            session.filled = self.filled;
        }
        session
    }
}

/// Appends the records `data` holds to `out[..*queued]`, growing it as needed.
fn encode<Data>(
    data: &mut EncodeTlsData<'_, Data>,
    out: &mut Vec<u8>,
    queued: &mut usize,
) -> io::Result<()> {
    loop {
        if out.len() < *queued {
            out.resize(*queued, 0);
        }
        match data.encode(&mut out[*queued..]) {
            Ok(n) => {
                *queued += n;
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(need)) => out.resize(*queued + need.required_size, 0),
            Err(e) => return Err(tls_error(e)),
        }
    }
}

/// The end of a connection this code drives: the server of the HTTPS ports, or the client of
/// an `https://` relay. The record path is the same for both.
pub trait Side {
    /// rustls' side-specific connection data.
    type Data;
    /// `process_tls_records` of that side.
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Side for UnbufferedServerConnection {
    type Data = rustls::server::ServerConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

impl Side for UnbufferedClientConnection {
    type Data = rustls::client::ClientConnectionData;
    fn process<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data> {
        self.process_tls_records(incoming)
    }
}

/// What processing the received records led to.
enum Inbound {
    /// Something changed (plaintext arrived, records were queued): look again.
    Progress,
    /// More bytes from the peer are needed.
    NeedInput,
    /// The peer ended the connection with `close_notify`.
    Closed,
}

/// A TLS connection past its handshake: the server end of an HTTPS port's connection by
/// default, or the client end of an `https://` relay ([`ClientSession`]).
pub struct Session<C = UnbufferedServerConnection> {
    /// rustls' state of the connection: keys and record sequence numbers.
    conn: C,
    /// Ciphertext a send left over, `pending[sent..]` still to go; no capacity until the first
    /// short send.
    pending: Vec<u8>,
    /// How much of `pending` went out.
    sent: usize,
    /// Records from the peer not yet processed, `incoming[..filled]`; no capacity until the
    /// connection is read from (listeners never are).
    incoming: Vec<u8>,
    /// Bytes of `incoming` in use.
    filled: usize,
    /// Decrypted bytes not yet read, `plain[taken..]`.
    plain: Vec<u8>,
    /// How much of `plain` was read.
    taken: usize,
}

/// The client end of a TLS connection (a relay pulling an `https://` upstream).
pub type ClientSession = Session<UnbufferedClientConnection>;

impl<C> std::fmt::Debug for Session<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("pending", &(self.pending.len() - self.sent))
            .finish()
    }
}

/// A TLS protocol failure as an I/O error.
fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl Session {
    /// Runs the handshake on `stream` and reads one request head, all within `timeout` (a peer
    /// trickling handshake bytes does not extend it) and `max_bytes` of head.
    pub async fn accept(
        stream: &mut TcpStream,
        config: Arc<rustls::ServerConfig>,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(Session, Request), RequestError> {
        let (session, first) = Self::accept_any(stream, config, max_bytes, timeout).await?;
        Ok((session, first?))
    }

    /// As [`accept`](Self::accept), but first bytes that are no HTTP request (a Shoutcast
    /// source's password line) come back with the session as [`RequestError::NotHttp`], for
    /// the source protocol to take up over TLS as in the clear.
    pub async fn accept_any(
        stream: &mut TcpStream,
        config: Arc<rustls::ServerConfig>,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<(Session, Result<Request, RequestError>), RequestError> {
        let deadline = async {
            Timer::new(timeout).await;
            Err(RequestError::Timeout(timeout))
        };
        future::or(
            Self::handshake_and_head(stream, config, max_bytes),
            deadline,
        )
        .await
    }

    async fn handshake_and_head(
        stream: &mut TcpStream,
        config: Arc<rustls::ServerConfig>,
        max_bytes: usize,
    ) -> Result<(Session, Result<Request, RequestError>), RequestError> {
        let mut handshake = Handshake::new(config, max_bytes)?;
        loop {
            match handshake.step()? {
                Step::Again => {}
                Step::Transmit => {
                    stream.write_all(handshake.to_send()).await?;
                    handshake.sent();
                }
                Step::NeedInput => {
                    let n = stream.read(handshake.input_room()?).await?;
                    if n == 0 {
                        return Err(RequestError::Closed);
                    }
                    handshake.received(n);
                }
                Step::Done(request) => return Ok((handshake.into_session(), Ok(request))),
                Step::NotHttp(raw) => {
                    return Ok((handshake.into_session(), Err(RequestError::NotHttp(raw))))
                }
            }
        }
    }
}

impl ClientSession {
    /// Runs a client handshake with the server `name` on `stream`. The caller bounds it in
    /// time.
    pub async fn connect(
        stream: &mut TcpStream,
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<ClientSession> {
        let conn = UnbufferedClientConnection::new(config, name).map_err(tls_error)?;
        let mut session = Session::new(conn);
        session.incoming.resize(RECORD_ROOM, 0);
        let (mut outgoing, mut queued) = (Vec::new(), 0);
        /// What the handshake needs next.
        enum Step {
            Again,
            Transmit,
            NeedInput,
            Done,
        }
        loop {
            let UnbufferedStatus { mut discard, state } = session
                .conn
                .process_tls_records(&mut session.incoming[..session.filled]);
            let step = match state.map_err(tls_error)? {
                ConnectionState::EncodeTlsData(mut data) => {
                    encode(&mut data, &mut outgoing, &mut queued)?;
                    Step::Again
                }
                ConnectionState::TransmitTlsData(data) => {
                    data.done();
                    Step::Transmit
                }
                ConnectionState::BlockedHandshake => Step::NeedInput,
                // Application data right after the server's handshake: kept for the first read.
                ConnectionState::ReadTraffic(mut traffic) => {
                    while let Some(record) = traffic.next_record() {
                        let record = record.map_err(tls_error)?;
                        discard += record.discard;
                        session.plain.extend_from_slice(record.payload);
                    }
                    Step::Again
                }
                ConnectionState::WriteTraffic(_) => Step::Done,
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "TLS: the server closed during the handshake",
                    ))
                }
                other => return Err(tls_error(format!("unexpected state {other:?}"))),
            };
            if discard > 0 {
                session.incoming.copy_within(discard..session.filled, 0);
                session.filled -= discard;
            }
            match step {
                Step::Again => {}
                Step::Transmit => {
                    stream.write_all(&outgoing[..queued]).await?;
                    queued = 0;
                }
                Step::NeedInput => {
                    if session.filled == session.incoming.len() {
                        return Err(tls_error("record larger than the protocol allows"));
                    }
                    let n = stream.read(&mut session.incoming[session.filled..]).await?;
                    if n == 0 {
                        return Err(io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "TLS: the server closed during the handshake",
                        ));
                    }
                    session.filled += n;
                }
                Step::Done => {
                    if queued > 0 {
                        stream.write_all(&outgoing[..queued]).await?;
                    }
                    return Ok(session);
                }
            }
        }
    }
}

impl<C: Side> Session<C> {
    fn new(conn: C) -> Self {
        Self {
            conn,
            pending: Vec::new(),
            sent: 0,
            incoming: Vec::new(),
            filled: 0,
            plain: Vec::new(),
            taken: 0,
        }
    }

    /// Reads decrypted bytes into `buf` on the async side (a source's audio, a relay's
    /// upstream); 0 at the end of the stream (`close_notify`, or the socket closing).
    ///
    /// Safe to cancel between socket reads, as a plain read is: state changes only once a
    /// read finished. Records rustls has to answer with meanwhile (a key update) wait in the
    /// pending ciphertext for the next write.
    pub async fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.taken < self.plain.len() {
                let n = buf.len().min(self.plain.len() - self.taken);
                buf[..n].copy_from_slice(&self.plain[self.taken..self.taken + n]);
                self.taken += n;
                if self.taken == self.plain.len() {
                    self.plain.clear();
                    self.taken = 0;
                }
                return Ok(n);
            }
            if buf.is_empty() {
                return Ok(0);
            }
            match self.decrypt()? {
                Inbound::Progress => {}
                Inbound::Closed => return Ok(0),
                Inbound::NeedInput => {
                    if self.incoming.len() < RECORD_ROOM {
                        self.incoming.resize(RECORD_ROOM, 0);
                    }
                    if self.filled == self.incoming.len() {
                        return Err(tls_error("record larger than the protocol allows"));
                    }
                    let n = stream.read(&mut self.incoming[self.filled..]).await?;
                    if n == 0 {
                        return Ok(0);
                    }
                    self.filled += n;
                }
            }
        }
    }

    /// Processes the records received so far into `plain`.
    fn decrypt(&mut self) -> io::Result<Inbound> {
        let UnbufferedStatus { mut discard, state } =
            self.conn.process(&mut self.incoming[..self.filled]);
        let next = match state.map_err(tls_error)? {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(tls_error)?;
                    discard += record.discard;
                    self.plain.extend_from_slice(record.payload);
                }
                Inbound::Progress
            }
            ConnectionState::EncodeTlsData(mut data) => {
                let mut queued = self.pending.len();
                encode(&mut data, &mut self.pending, &mut queued)?;
                self.pending.truncate(queued);
                Inbound::Progress
            }
            // Sent before the next write (see `read`).
            ConnectionState::TransmitTlsData(data) => {
                data.done();
                Inbound::Progress
            }
            ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake => {
                Inbound::NeedInput
            }
            ConnectionState::PeerClosed | ConnectionState::Closed => Inbound::Closed,
            other => return Err(tls_error(format!("unexpected state {other:?}"))),
        };
        if discard > 0 {
            self.incoming.copy_within(discard..self.filled, 0);
            self.filled -= discard;
        }
        Ok(next)
    }

    /// Encrypts `plain` into `out` (grown as needed), after any record rustls itself still has
    /// to send; returns the ciphertext length.
    fn seal(&mut self, plain: &[u8], out: &mut Vec<u8>) -> io::Result<usize> {
        let mut len = 0;
        loop {
            let UnbufferedStatus { state, .. } = self.conn.process(&mut []);
            match state.map_err(tls_error)? {
                ConnectionState::WriteTraffic(mut traffic) => {
                    if out.len() < len + sealed_len(plain.len()) {
                        out.resize(len + sealed_len(plain.len()), 0);
                    }
                    return match traffic.encrypt(plain, &mut out[len..]) {
                        Ok(n) => Ok(len + n),
                        Err(EncryptError::InsufficientSize(need)) => {
                            out.resize(len + need.required_size, 0);
                            traffic
                                .encrypt(plain, &mut out[len..])
                                .map(|n| len + n)
                                .map_err(tls_error)
                        }
                        Err(e) => Err(tls_error(e)),
                    };
                }
                // A record rustls queued on its own (a key update): it goes first.
                ConnectionState::EncodeTlsData(mut data) => loop {
                    match data.encode(&mut out[len..]) {
                        Ok(n) => {
                            len += n;
                            break;
                        }
                        Err(EncodeError::InsufficientSize(need)) => {
                            out.resize(len + need.required_size, 0)
                        }
                        Err(e) => return Err(tls_error(e)),
                    }
                },
                // Sent with what follows.
                ConnectionState::TransmitTlsData(data) => data.done(),
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    return Err(io::Error::from(ErrorKind::ConnectionReset))
                }
                other => return Err(tls_error(format!("unexpected state {other:?}"))),
            }
        }
    }

    /// Sends `bytes` encrypted, on the async side (responses, stream headers).
    pub async fn write_all(&mut self, stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
        if self.has_pending() {
            stream.write_all(&self.pending[self.sent..]).await?;
            self.pending.clear();
            self.sent = 0;
        }
        let mut out = Vec::new();
        for piece in bytes.chunks(MAX_FRAGMENT) {
            let n = self.seal(piece, &mut out)?;
            stream.write_all(&out[..n]).await?;
        }
        Ok(())
    }

    /// Whether ciphertext of an earlier chunk is still to be sent.
    pub fn has_pending(&self) -> bool {
        self.sent < self.pending.len()
    }

    /// Ciphertext bytes still to be sent.
    pub fn pending_len(&self) -> usize {
        self.pending.len() - self.sent
    }

    /// One non-blocking send of the ciphertext a short send left; returns the bytes sent.
    pub fn send_pending(&mut self, socket: &StdTcpStream) -> io::Result<usize> {
        let n = (&*socket).write(&self.pending[self.sent..])?;
        self.sent += n;
        if self.sent == self.pending.len() {
            // Capacity stays for the next short send.
            self.pending.clear();
            self.sent = 0;
        }
        Ok(n)
    }

    /// Encrypts `plain` into `cipher` (the shard's buffer, reused for every listener) and sends
    /// it with one non-blocking send; what the socket does not take is kept for
    /// [`send_pending`](Self::send_pending). Only to be called with nothing pending. Once this
    /// returns `Ok`, all of `plain` counts as sent: its records are sealed.
    pub fn seal_and_send(
        &mut self,
        plain: &[u8],
        cipher: &mut Vec<u8>,
        socket: &StdTcpStream,
    ) -> io::Result<usize> {
        debug_assert!(!self.has_pending());
        let len = self.seal(plain, cipher)?;
        let sent = match (&*socket).write(&cipher[..len]) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        if sent < len {
            self.pending.clear();
            self.pending.extend_from_slice(&cipher[sent..len]);
            self.sent = 0;
        }
        Ok(sent)
    }

    /// Ends the connection cleanly for shutdown: what is pending, then `close_notify`, as far
    /// as the socket takes them without blocking.
    pub fn close_notify(&mut self, socket: &StdTcpStream) {
        if self.has_pending() && self.send_pending(socket).is_err() {
            return;
        }
        if self.has_pending() {
            // The alert cannot follow a record cut short.
            return;
        }
        let UnbufferedStatus { state, .. } = self.conn.process(&mut []);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = state {
            let mut alert = [0u8; 64];
            if let Ok(n) = traffic.queue_close_notify(&mut alert) {
                let _ = (&*socket).write(&alert[..n]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A server configuration and a client trusting it, for a self-signed `localhost`.
    fn pair() -> (Arc<rustls::ServerConfig>, rustls::ClientConnection) {
        let provider = crate::tls::provider();
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let client = rustls::ClientConnection::new(Arc::new(client), name).unwrap();
        (Arc::new(server), client)
    }

    /// Everything the client has to send.
    fn flight(client: &mut rustls::ClientConnection) -> Vec<u8> {
        let mut out = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut out).unwrap();
        }
        out
    }

    /// Hands `bytes` from the server to the client; returns the plaintext it can read.
    fn to_client(client: &mut rustls::ClientConnection, mut bytes: &[u8]) -> Vec<u8> {
        while !bytes.is_empty() {
            client.read_tls(&mut bytes).unwrap();
            client.process_new_packets().unwrap();
        }
        let mut plain = Vec::new();
        let _ = client.reader().read_to_end(&mut plain);
        plain
    }

    #[test]
    fn a_head_with_audio_in_the_same_flight_keeps_the_audio_and_answers_after_the_tickets() {
        let (config, mut client) = pair();
        // Written before the handshake ends, so it goes out with the client's Finished: the
        // head and 40 KB of audio in one flight, as a source that does not wait would send.
        let audio: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
        use std::io::Write as _;
        client
            .writer()
            .write_all(b"PUT /live HTTP/1.1\r\nContent-Type: audio/mpeg\r\n\r\n")
            .unwrap();
        client.writer().write_all(&audio).unwrap();
        let mut handshake = Handshake::new(config, 8192).unwrap();
        let mut wire = flight(&mut client);
        let request = loop {
            match handshake.step().unwrap() {
                Step::Again => {}
                Step::Transmit => {
                    to_client(&mut client, handshake.to_send());
                    handshake.sent();
                    wire.extend(flight(&mut client));
                }
                Step::NeedInput => {
                    let room = handshake.input_room().unwrap();
                    let n = room.len().min(wire.len());
                    assert!(n > 0, "the server waits for bytes that were all sent");
                    room[..n].copy_from_slice(&wire[..n]);
                    wire.drain(..n);
                    handshake.received(n);
                }
                Step::Done(request) => break request,
                Step::NotHttp(raw) => panic!("not HTTP: {raw:?}"),
            }
        };
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("PUT", "/live")
        );
        let mut session = handshake.into_session();
        // The audio past the head: in the body, in records already received, and on the wire.
        let mut got = request.body.clone();
        session.incoming.resize(RECORD_ROOM, 0);
        while got.len() < audio.len() {
            match session.decrypt().unwrap() {
                Inbound::Progress => {
                    got.extend_from_slice(&session.plain[session.taken..]);
                    session.plain.clear();
                }
                Inbound::NeedInput => {
                    let n = (session.incoming.len() - session.filled).min(wire.len());
                    assert!(n > 0, "audio lost: {} of {} bytes", got.len(), audio.len());
                    session.incoming[session.filled..session.filled + n]
                        .copy_from_slice(&wire[..n]);
                    wire.drain(..n);
                    session.filled += n;
                }
                Inbound::Closed => panic!("closed"),
            }
        }
        assert!(got == audio, "the audio arrived altered");
        // The answer decrypts: the session tickets went out before it.
        let mut out = Vec::new();
        let n = session.seal(b"HTTP/1.1 200 OK\r\n\r\n", &mut out).unwrap();
        assert_eq!(
            to_client(&mut client, &out[..n]),
            b"HTTP/1.1 200 OK\r\n\r\n"
        );
    }

    #[test]
    fn sealed_len_covers_record_overhead() {
        assert_eq!(sealed_len(0), RECORD_OVERHEAD);
        assert_eq!(sealed_len(1), 1 + RECORD_OVERHEAD);
        assert_eq!(sealed_len(MAX_FRAGMENT), MAX_FRAGMENT + RECORD_OVERHEAD);
        assert_eq!(
            sealed_len(MAX_FRAGMENT + 1),
            MAX_FRAGMENT + 1 + 2 * RECORD_OVERHEAD
        );
    }
}
