//! Relays: a mount fed by pulling another Icecast-compatible server's stream, the way stations
//! scale out (an origin plus relay edges behind a load balancer). The upstream's ICY titles
//! become the local title. A relay holds its mount like a live source, reconnects with
//! exponential backoff, and with `on_demand` pulls only while the mount has listeners. An
//! `https://` upstream is pulled over TLS ([`tls_connect`]).

use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_lite::future;
use glommio::net::TcpStream;
use glommio::timer::{sleep, Timer};

use super::format::{Format, Framer};
use super::source::LiveGuard;
use super::IngestContext;
use crate::config::RelayConfig;
use crate::logging::escape;
use crate::mount::{Mount, StreamInfo};
use crate::tls::{ClientConn, ClientSession};

/// Longest upstream response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long connecting and the response head may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An on-demand relay lets go this long after its last listener left.
const IDLE_GRACE: Duration = Duration::from_secs(10);
/// How often an idle on-demand relay looks for listeners.
const DEMAND_POLL: Duration = Duration::from_millis(500);

/// Why a pull ended.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The URL is not `http[s]://host[:port]/path`.
    #[error("bad relay URL {0:?}")]
    Url(String),
    /// The TLS client could not be set up, or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// Network trouble.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The upstream answered something other than a stream.
    #[error("upstream answered {0}")]
    Status(String),
    /// A live source holds the mount.
    #[error("the mount is held by a live source")]
    Busy,
    /// The upstream stopped sending.
    #[error("upstream silent for {0:?}")]
    Silent(Duration),
}

/// Runs the relay of `mount` for the life of the ingest core.
pub async fn run(ctx: Rc<IngestContext>, mount: Arc<Mount>, relay: RelayConfig) {
    let min = Duration::from_secs_f64(relay.reconnect_min);
    let max = Duration::from_secs_f64(relay.reconnect_max);
    let mut delay = min;
    if is_https(&relay.url) && !relay.tls_verify {
        tracing::warn!(mount = %escape(&mount.name), url = %relay.url, "relay: tls_verify = false, the upstream's certificate is not checked");
    }
    loop {
        if relay.on_demand {
            while mount.listeners.load(Ordering::Relaxed) == 0 {
                sleep(DEMAND_POLL).await;
            }
        }
        let started = Instant::now();
        match pull(&ctx, &mount, &relay).await {
            Ok(()) => delay = min,
            Err(e) => {
                // A pull that ran a while was healthy: start the backoff over.
                if started.elapsed() > max {
                    delay = min;
                }
                // The error may quote the upstream's reason phrase.
                tracing::warn!(mount = %escape(&mount.name), url = %relay.url, "relay: {}; retrying in {delay:?}", escape(&e.to_string()));
                sleep(delay).await;
                delay = (delay * 2).min(max);
            }
        }
    }
}

/// One connection to the upstream, until it fails or (on demand) listeners are gone.
async fn pull(
    ctx: &IngestContext,
    mount: &Arc<Mount>,
    relay: &RelayConfig,
) -> Result<(), RelayError> {
    let (host, path) = split_url(&relay.url).ok_or_else(|| RelayError::Url(relay.url.clone()))?;
    let addr = host
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| RelayError::Url(relay.url.clone()))?;
    let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut stream = ClientConn { stream, tls: None };
    if is_https(&relay.url) {
        stream.tls = Some(tls_connect(&mut stream.stream, &host, relay).await?);
    }
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: {}\r\nIcy-MetaData: 1\r\nConnection: close\r\n\r\n",
        crate::http::server_id()
    );
    stream.write_all(request.as_bytes()).await?;
    let (head, body) = read_head(&mut stream).await?;
    let feed = ctx
        .feed_for(&mount.name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if !ctx.claim(mount.id) {
        return Err(RelayError::Busy);
    }
    let guard = LiveGuard::new(ctx, feed.clone(), mount.id);
    let format = Format::from_content_type(&head.content_type);
    guard.go_live(head.info(addr), format);
    tracing::info!(mount = %escape(&mount.name), url = %relay.url, content_type = %escape(&head.content_type), "relay connected");
    let mut framer = Framer::new(format);
    let mut icy = head.metaint.map(IcySplitter::new);
    let mut take = |bytes: &[u8]| match icy.as_mut() {
        Some(splitter) => splitter.split(
            bytes,
            |audio| framer.feed(audio, false, &mut feed.borrow_mut()),
            |title| {
                if relay.relay_metadata {
                    mount.set_title(&title);
                }
            },
        ),
        None => framer.feed(bytes, false, &mut feed.borrow_mut()),
    };
    take(&body);
    let timeout = ctx.shared.config().source_timeout();
    let mut buf = vec![0u8; 16 * 1024];
    let mut idle_since: Option<Instant> = None;
    loop {
        if relay.on_demand {
            if mount.listeners.load(Ordering::Relaxed) > 0 {
                idle_since = None;
            } else if idle_since.get_or_insert_with(Instant::now).elapsed() > IDLE_GRACE {
                tracing::info!(mount = %escape(&mount.name), "relay idle: no listeners");
                return Ok(());
            }
        }
        let flush_due = feed.borrow().flush_due();
        let wait = flush_due.unwrap_or(timeout).min(timeout);
        let read = future::or(async { Some(stream.read(&mut buf).await) }, async {
            Timer::new(wait).await;
            None
        })
        .await;
        match read {
            Some(Ok(0)) => return Ok(()),
            Some(Ok(n)) => take(&buf[..n]),
            Some(Err(e)) => return Err(e.into()),
            None if flush_due.is_some() => feed.borrow_mut().flush(),
            None => return Err(RelayError::Silent(timeout)),
        }
    }
}

/// The TLS client session with the `https://` upstream at `authority` (`host:port`), set up
/// within [`CONNECT_TIMEOUT`] and checked against the relay's `ca_file` or the system roots.
async fn tls_connect(
    stream: &mut TcpStream,
    authority: &str,
    relay: &RelayConfig,
) -> Result<ClientSession, RelayError> {
    let config = crate::tls::client::client_config(relay.ca_file.as_deref(), relay.tls_verify)
        .map_err(RelayError::Tls)?;
    let name = crate::tls::client::server_name(authority).map_err(RelayError::Tls)?;
    let handshake = async {
        // Its errors already say `TLS: ...`.
        ClientSession::connect(stream, config, name)
            .await
            .map_err(RelayError::Io)
    };
    let deadline = async {
        Timer::new(CONNECT_TIMEOUT).await;
        Err(RelayError::Tls(format!(
            "no handshake within {CONNECT_TIMEOUT:?}"
        )))
    };
    future::or(handshake, deadline).await
}

fn is_https(url: &str) -> bool {
    url.starts_with("https://")
}

/// `http://host[:port]/path` → (`host:port`, `/path`); `https://` defaults to port 443.
fn split_url(url: &str) -> Option<(String, String)> {
    let (rest, default_port) = match url.strip_prefix("https://") {
        Some(rest) => (rest, 443),
        None => (url.strip_prefix("http://")?, 80),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    let host = if authority.rsplit(':').next()?.parse::<u16>().is_ok() && authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    Some((host, path.to_string()))
}

/// What the upstream announced.
struct UpstreamHead {
    content_type: String,
    metaint: Option<usize>,
    name: String,
    genre: String,
    description: String,
    url: String,
    bitrate: Option<u32>,
}

impl UpstreamHead {
    fn info(&self, upstream: std::net::SocketAddr) -> StreamInfo {
        StreamInfo {
            content_type: self.content_type.clone(),
            live: true,
            name: self.name.clone(),
            description: self.description.clone(),
            genre: self.genre.clone(),
            url: self.url.clone(),
            bitrate: self.bitrate,
            source_agent: "relay".into(),
            source_addr: Some(upstream),
            since: Some(SystemTime::now()),
            ..StreamInfo::default()
        }
    }
}

/// Reads the upstream's response head; returns it and the audio that came with it.
async fn read_head(stream: &mut ClientConn) -> Result<(UpstreamHead, Vec<u8>), RelayError> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > MAX_HEAD || Instant::now() > deadline {
            return Err(RelayError::Status(
                "an oversized or slow response head".into(),
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = future::or(async { stream.read(&mut chunk).await.map(Some) }, async {
            Timer::new(left).await;
            Ok(None)
        })
        .await?;
        match n {
            Some(0) | None => return Err(RelayError::Status("no response".into())),
            Some(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    // Shoutcast servers answer `ICY 200 OK`.
    let text = String::from_utf8_lossy(&buf[..end]).replacen("ICY ", "HTTP/1.0 ", 1);
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    response
        .parse(text.as_bytes())
        .map_err(|e| RelayError::Status(format!("a malformed head ({e})")))?;
    if response.code != Some(200) {
        return Err(RelayError::Status(format!(
            "{} {}",
            response.code.unwrap_or(0),
            response.reason.unwrap_or("")
        )));
    }
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
            .unwrap_or_default()
    };
    let head = UpstreamHead {
        content_type: Some(header("content-type"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "audio/mpeg".into()),
        metaint: header("icy-metaint").parse().ok().filter(|&m| m > 0),
        name: header("icy-name"),
        genre: header("icy-genre"),
        description: header("icy-description"),
        url: header("icy-url"),
        bitrate: header("icy-br")
            .split(',')
            .next()
            .and_then(|b| b.trim().parse().ok()),
    };
    Ok((head, buf[end..].to_vec()))
}

/// Takes ICY metadata blocks out of a stream: audio goes one way, titles the other.
struct IcySplitter {
    /// Audio bytes between blocks.
    metaint: usize,
    /// Audio bytes left before the next length byte.
    audio_left: usize,
    /// Bytes of the current block still to come, once its length byte was read.
    block_left: Option<usize>,
    /// The current block's bytes so far.
    block: Vec<u8>,
}

impl IcySplitter {
    fn new(metaint: usize) -> Self {
        Self {
            metaint,
            audio_left: metaint,
            block_left: None,
            block: Vec::new(),
        }
    }

    fn split(
        &mut self,
        mut input: &[u8],
        mut audio: impl FnMut(&[u8]),
        mut title: impl FnMut(String),
    ) {
        while !input.is_empty() {
            match self.block_left {
                None if self.audio_left > 0 => {
                    let take = self.audio_left.min(input.len());
                    audio(&input[..take]);
                    self.audio_left -= take;
                    input = &input[take..];
                }
                None => {
                    let len = input[0] as usize * 16;
                    input = &input[1..];
                    self.block.clear();
                    if len == 0 {
                        self.audio_left = self.metaint;
                    } else {
                        self.block_left = Some(len);
                    }
                }
                Some(left) => {
                    let take = left.min(input.len());
                    self.block.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if take == left {
                        self.block_left = None;
                        self.audio_left = self.metaint;
                        if let Some(t) = stream_title(&self.block) {
                            title(t);
                        }
                    } else {
                        self.block_left = Some(left - take);
                    }
                }
            }
        }
    }
}

/// `StreamTitle='…';` from a metadata block.
fn stream_title(block: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(block);
    let start = text.find("StreamTitle='")? + "StreamTitle='".len();
    let rest = &text[start..];
    let end = rest.find("';").unwrap_or(rest.trim_end_matches('\0').len());
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_address_and_path() {
        assert_eq!(
            split_url("http://127.0.0.1:8000/stream"),
            Some(("127.0.0.1:8000".into(), "/stream".into()))
        );
        assert_eq!(
            split_url("http://example.test/live"),
            Some(("example.test:80".into(), "/live".into()))
        );
        assert_eq!(
            split_url("http://host:9000"),
            Some(("host:9000".into(), "/".into()))
        );
        assert_eq!(
            split_url("https://radio.example/live"),
            Some(("radio.example:443".into(), "/live".into()))
        );
        assert_eq!(
            split_url("https://localhost:8443/stream"),
            Some(("localhost:8443".into(), "/stream".into()))
        );
        assert_eq!(split_url("ftp://x/y"), None);
    }

    #[test]
    fn icy_blocks_are_taken_out_in_any_split() {
        let mut stream = Vec::new();
        let audio: Vec<u8> = (0..100u8).collect();
        let block = crate::icy::metadata_block("A - B", crate::icy::Charset::Utf8);
        for chunk in audio.chunks(10) {
            stream.extend_from_slice(chunk);
            stream.extend_from_slice(&block);
        }
        for step in [1, 3, 7, 64, 1000] {
            let mut splitter = IcySplitter::new(10);
            let (mut got, mut titles) = (Vec::new(), Vec::new());
            for piece in stream.chunks(step) {
                splitter.split(piece, |a| got.extend_from_slice(a), |t| titles.push(t));
            }
            assert_eq!(got, audio, "step {step}");
            assert_eq!(titles.len(), 10);
            assert!(titles.iter().all(|t| t == "A - B"));
        }
    }
}
