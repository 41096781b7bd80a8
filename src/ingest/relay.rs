//! Relays: a mount fed by pulling another Icecast-compatible server's stream, the way stations
//! scale out (an origin plus relay edges behind a load balancer). The upstream's ICY titles
//! become the local title. A relay holds its mount like a live source, reconnects with
//! exponential backoff, and with `on_demand` pulls only while the mount has listeners. An
//! `https://` upstream is pulled over TLS ([`tls_connect`]).

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
use crate::icy::{stream_title, IcyDemux};
use crate::logging::escape;
use crate::mount::{Mount, StreamInfo};
use crate::tls::{ClientConn, ClientSession};
use crate::url::{HttpUrl, UrlError};

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
    /// The URL is not `http[s]://[user:password@]host[:port]/path`.
    #[error("bad relay URL: {0}")]
    Url(#[from] UrlError),
    /// The host resolved to no address.
    #[error("{0} resolves to no address")]
    NoAddress(String),
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
    // Validation checked the URL; a bad one here would fail every pull alike.
    let url = match HttpUrl::parse(&relay.url) {
        Ok(url) => url,
        Err(e) => {
            tracing::error!(mount = %escape(&mount.name), "relay not started: {}", RelayError::from(e));
            return;
        }
    };
    // Logs show the URL without its password.
    let shown = url.redacted();
    let min = Duration::from_secs_f64(relay.reconnect_min);
    let max = Duration::from_secs_f64(relay.reconnect_max);
    let mut delay = min;
    if url.tls && !relay.tls_verify {
        tracing::warn!(mount = %escape(&mount.name), url = %escape(&shown), "relay: tls_verify = false, the upstream's certificate is not checked");
    }
    loop {
        if relay.on_demand {
            while mount.listeners.load(Ordering::Relaxed) == 0 {
                sleep(DEMAND_POLL).await;
            }
        }
        let started = Instant::now();
        match pull(&ctx, &mount, &relay, &url).await {
            Ok(()) => delay = min,
            Err(e) => {
                // A pull that ran a while was healthy: start the backoff over.
                if started.elapsed() > max {
                    delay = min;
                }
                // The error may quote the upstream's reason phrase.
                tracing::warn!(mount = %escape(&mount.name), url = %escape(&shown), "relay: {}; retrying in {delay:?}", escape(&e.to_string()));
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
    url: &HttpUrl,
) -> Result<(), RelayError> {
    let addr = url
        .socket_addrs()?
        .next()
        .ok_or_else(|| RelayError::NoAddress(url.host.clone()))?;
    let stream = TcpStream::connect_timeout(addr, CONNECT_TIMEOUT)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut stream = ClientConn { stream, tls: None };
    if url.tls {
        stream.tls = Some(tls_connect(&mut stream.stream, url, relay).await?);
    }
    stream.write_all(&upstream_request(url)).await?;
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
    tracing::info!(mount = %escape(&mount.name), url = %escape(&url.redacted()), content_type = %escape(&head.content_type), "relay connected");
    let mut framer = Framer::new(format);
    let mut icy = head.metaint.map(IcyDemux::new);
    let mut take = |bytes: &[u8]| match icy.as_mut() {
        Some(demux) => demux.feed(
            bytes,
            |audio| framer.feed(audio, false, &mut feed.borrow_mut()),
            |block| match stream_title(block) {
                Some(title) if relay.relay_metadata => mount.set_title(&title),
                _ => {}
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

/// The GET for the upstream stream, with the URL's credentials as Basic auth (how Icecast
/// relays log in to a protected upstream).
fn upstream_request(url: &HttpUrl) -> Vec<u8> {
    let mut request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: {}\r\nIcy-MetaData: 1\r\nConnection: close\r\n",
        url.path,
        url.host_header(),
        crate::http::server_id()
    );
    if let Some(credentials) = &url.credentials {
        request.push_str(&format!(
            "Authorization: {}\r\n",
            credentials.basic_authorization()
        ));
    }
    request.push_str("\r\n");
    request.into_bytes()
}

/// The TLS client session with the `https://` upstream `url`, set up
/// within [`CONNECT_TIMEOUT`] and checked against the relay's `ca_file` or the system roots.
async fn tls_connect(
    stream: &mut TcpStream,
    url: &HttpUrl,
    relay: &RelayConfig,
) -> Result<ClientSession, RelayError> {
    let config = crate::tls::client::client_config(relay.ca_file.as_deref(), relay.tls_verify)
        .map_err(RelayError::Tls)?;
    let name = crate::tls::client::server_name(&url.host).map_err(RelayError::Tls)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_carries_the_url_credentials_as_basic_auth() {
        let url = HttpUrl::parse("http://relay:p%40ss@[::1]:8000/live?x=1").unwrap();
        let request = String::from_utf8(upstream_request(&url)).unwrap();
        assert!(
            request.starts_with("GET /live?x=1 HTTP/1.0\r\nHost: [::1]:8000\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nAuthorization: Basic cmVsYXk6cEBzcw==\r\n"),
            "{request}"
        );
        assert!(request.ends_with("\r\n\r\n"));
        let url = HttpUrl::parse("http://origin/stream").unwrap();
        let request = String::from_utf8(upstream_request(&url)).unwrap();
        assert!(request.contains("\r\nHost: origin\r\n"), "{request}");
        assert!(!request.contains("Authorization"), "{request}");
    }
}
