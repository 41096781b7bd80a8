//! HTTP/1.x request heads as sources and listeners send them, parsed with `httparse`, plus the
//! small response and authentication helpers both ports share.
//!
//! Sources speak a few dialects httparse does not: `SOURCE /m ICE/1.0` (rewritten to HTTP/1.0
//! before parsing) and bare-LF header lines (httparse accepts those as they are).

use std::time::Duration;

use base64::Engine;
use futures_lite::{future, AsyncReadExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use subtle::ConstantTimeEq;

/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 64;

/// A parsed request head plus whatever body bytes arrived with it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `SOURCE`, `PUT`, …, as sent.
    pub method: String,
    /// Path without the query string, percent-decoding left to the caller.
    pub path: String,
    /// Raw query string (after `?`), empty when absent.
    pub query: String,
    /// Minor version of HTTP/1.x (ICE/1.0 counts as 0).
    pub minor_version: u8,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Bytes after the head that arrived in the same reads: for sources, the first audio.
    pub body: Vec<u8>,
    /// Made from a Shoutcast v1 source login, which was already answered `OK2`.
    pub shoutcast: bool,
}

impl Request {
    /// First header with this name, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Query parameter `name`, decoded (`+` as space) and read as UTF-8 (invalid sequences
    /// become U+FFFD).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_bytes(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Query parameter `name` decoded to bytes, for values in a charset the request names.
    pub fn query_bytes(&self, name: &str) -> Option<Vec<u8>> {
        query_pairs(&self.query).find_map(|(k, v)| (k == name.as_bytes()).then_some(v))
    }

    /// User and password of a Basic `Authorization` header.
    pub fn basic_credentials(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let (scheme, encoded) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, pass) = text.split_once(':')?;
        Some((user.to_string(), pass.to_string()))
    }

    /// Whether the request's Basic credentials are `user` and `password` (compared with
    /// [`secret_matches`], so an empty configured password never matches).
    pub fn basic_auth_matches(&self, user: &str, password: &str) -> bool {
        self.basic_credentials()
            .is_some_and(|(u, p)| u == user && secret_matches(&p, password))
    }
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The peer closed before sending a whole head.
    #[error("connection closed before the request was complete")]
    Closed,
    /// The head did not arrive within the header timeout.
    #[error("request header not received within {0:?}")]
    Timeout(Duration),
    /// The head is longer than allowed.
    #[error("request header larger than {0} bytes")]
    TooLarge(usize),
    /// The head is not HTTP.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The first line is a bare word: a Shoutcast v1 source sending its password. Carries
    /// everything read so far.
    #[error("not an HTTP request (a Shoutcast source login?)")]
    NotHttp(Vec<u8>),
    /// Socket error.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

impl RequestError {
    /// The status line to answer with, when an answer makes sense.
    pub fn response(&self) -> Option<Vec<u8>> {
        match self {
            RequestError::TooLarge(_) => Some(response(
                431,
                "Request Header Fields Too Large",
                &[],
                "Request header too large\n",
            )),
            RequestError::Malformed(_) | RequestError::NotHttp(_) => {
                Some(response(400, "Bad Request", &[], "Malformed request\n"))
            }
            RequestError::Timeout(_) => {
                Some(response(408, "Request Timeout", &[], "Request timeout\n"))
            }
            RequestError::Closed | RequestError::Io(_) => None,
        }
    }
}

/// Where a request head is read from: a plain socket, or a connection with TLS in between.
pub trait ReadSome {
    /// Reads what is there into `buf`; 0 at the end of the stream.
    fn read_some(
        &mut self,
        buf: &mut [u8],
    ) -> impl std::future::Future<Output = std::io::Result<usize>>;
}

impl ReadSome for TcpStream {
    async fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.read(buf).await
    }
}

/// Reads one request head, giving up after `timeout` overall (a peer trickling bytes does not
/// extend it) or when the head is longer than `max_bytes`, however the bytes were split.
pub async fn read_request(
    stream: &mut impl ReadSome,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Request, RequestError> {
    let read = async {
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read_some(&mut chunk).await?;
            if n == 0 {
                return Err(RequestError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(request) = parse_head_within(&buf, max_bytes)? {
                return Ok(request);
            }
        }
    };
    let deadline = async {
        Timer::new(timeout).await;
        Err(RequestError::Timeout(timeout))
    };
    future::or(read, deadline).await
}

/// Reads a request head within the configured size and time limits. On failure it answers
/// what it can (400, 408, 431), logs why at debug level, and returns `None`.
pub async fn read_or_reject(
    stream: &mut TcpStream,
    config: &crate::config::Config,
) -> Option<Request> {
    match read_request(
        stream,
        config.limits.max_header_bytes,
        config.header_timeout(),
    )
    .await
    {
        Ok(request) => Some(request),
        Err(e) => {
            tracing::debug!(peer = ?stream.peer_addr().ok(), "request refused: {e}");
            if let Some(answer) = e.response() {
                let _ = futures_lite::AsyncWriteExt::write_all(stream, &answer).await;
            }
            None
        }
    }
}

/// Parses a complete head of at most `max_bytes` from `buf`, `Ok(None)` while it is still
/// partial. Only the first `max_bytes` are parsed, so a longer head is refused whether it came
/// in one read or many; bytes after a head that fits (a source's first audio) are its body.
pub fn parse_head_within(buf: &[u8], max_bytes: usize) -> Result<Option<Request>, RequestError> {
    let window = &buf[..buf.len().min(max_bytes)];
    match parse_head(window)? {
        Some(mut request) => {
            request.body.extend_from_slice(&buf[window.len()..]);
            Ok(Some(request))
        }
        None if buf.len() > max_bytes => Err(RequestError::TooLarge(max_bytes)),
        None => Ok(None),
    }
}

/// Parses a complete head from `buf`, `Ok(None)` while it is still partial.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, RequestError> {
    // Judge nothing before the request line is complete: a split `SOURCE /m ICE/1.0` would
    // otherwise look malformed to httparse.
    let Some(line_end) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    // `ICE/1.0` in the request line becomes `HTTP/1.0` (one byte longer) for httparse.
    let line_end = Some(line_end);
    let ice = line_end.and_then(|end| {
        let line = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]);
        line.ends_with(b" ICE/1.0").then_some(line.len())
    });
    let normalized;
    let (input, shift) = match ice {
        Some(line_len) => {
            let mut v = Vec::with_capacity(buf.len() + 1);
            v.extend_from_slice(&buf[..line_len - 7]);
            v.extend_from_slice(b"HTTP/1.0");
            v.extend_from_slice(&buf[line_len..]);
            normalized = v;
            (&normalized[..], 1)
        }
        None => (buf, 0),
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            let first_line = buf
                .split(|&b| b == b'\n')
                .next()
                .filter(|_| buf.contains(&b'\n'));
            // A password is one printable word; binary junk (a TLS hello) is just malformed.
            let bare_word = first_line.is_some_and(|l| {
                let word = l.trim_ascii();
                !word.is_empty() && word.iter().all(|b| b.is_ascii_graphic())
            });
            return Err(if bare_word {
                RequestError::NotHttp(buf.to_vec())
            } else {
                RequestError::Malformed(e.to_string())
            });
        }
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        minor_version: req.version.unwrap_or(0),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect(),
        body: buf[head_len - shift..].to_vec(),
        shoutcast: false,
    }))
}

/// The listener's address: the peer, or when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_addr(
    peer: std::net::IpAddr,
    request: &Request,
    trusted: &[String],
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| {
        trusted
            .iter()
            .any(|t| t.parse::<std::net::IpAddr>().is_ok_and(|t| t == *ip))
    };
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(forwarded) = request.header("x-forwarded-for") else {
        return peer;
    };
    forwarded
        .rsplit(',')
        .filter_map(|hop| hop.trim().parse::<std::net::IpAddr>().ok())
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer)
}

/// A complete `HTTP/1.0` response with a plain-text body.
pub fn response(status: u16, reason: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.0 {status} {reason}\r\nServer: {}\r\nConnection: close\r\n",
        server_id()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
    {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

/// The `401` asking for Basic credentials, with a plain-text `body` saying why. The realm is
/// Icecast's, which source clients and browsers already know.
pub fn unauthorized(body: &str) -> Vec<u8> {
    response(
        401,
        "Authentication Required",
        &[("WWW-Authenticate", "Basic realm=\"Icecast2 Server\"")],
        body,
    )
}

/// `Server:` header value and `server_id` in status pages.
pub fn server_id() -> &'static str {
    concat!("cycast/", env!("CARGO_PKG_VERSION"))
}

/// Compares a presented secret with the configured one in time independent of where they
/// differ.
pub fn secret_matches(presented: &str, expected: &str) -> bool {
    !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
}

/// Decodes `%XX` escapes (two hex digits) to bytes; any other `%` stays as it is. No charset
/// is assumed: callers read the bytes as UTF-8 or as what the request declares.
pub fn percent_decode_bytes(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// Form decoding, as query strings use it: `+` is a space, then `%XX` escapes (so `%2B` is a
/// literal `+`). Bytes, as [`percent_decode_bytes`].
pub fn form_decode(s: &str) -> Vec<u8> {
    let plus_as_space: Vec<u8> = s
        .bytes()
        .map(|b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&plus_as_space).collect()
}

/// [`form_decode`] read as UTF-8, invalid sequences as U+FFFD.
pub fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&form_decode(s)).into_owned()
}

/// The parameters of a query string in order, names and values form-decoded to bytes; a
/// parameter without `=` has an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(k), form_decode(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_request_line_and_bare_lf_headers() {
        let head = b"SOURCE /live ICE/1.0\ncontent-type: audio/mpeg\nAuthorization: Basic c291cmNlOmhhY2ttZQ==\r\n\r\nAUDIO";
        let req = parse_head(head).unwrap().unwrap();
        assert_eq!(req.method, "SOURCE");
        assert_eq!(req.path, "/live");
        assert_eq!(req.header("Content-Type"), Some("audio/mpeg"));
        assert_eq!(
            req.basic_credentials(),
            Some(("source".into(), "hackme".into()))
        );
        assert_eq!(req.body, b"AUDIO");
    }

    #[test]
    fn partial_then_complete() {
        assert!(parse_head(b"GET /stream HTTP/1.1\r\nHost: x\r\n")
            .unwrap()
            .is_none());
        let req = parse_head(b"GET /stream?a=1&song=A%20-+B HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.path, "/stream");
        assert_eq!(req.query_param("song").as_deref(), Some("A - B"));
        assert_eq!(req.minor_version, 1);
        assert!(req.body.is_empty());
    }

    #[test]
    fn a_bare_word_line_is_a_shoutcast_login() {
        assert!(matches!(
            parse_head(b"hackme\r\nicy-name:x\r\n\r\n"),
            Err(RequestError::NotHttp(_))
        ));
        assert!(matches!(
            parse_head(b"hackme\n"),
            Err(RequestError::NotHttp(_))
        ));
    }

    /// A `GET` head of exactly `len` bytes.
    fn head_of(len: usize) -> Vec<u8> {
        let start = b"GET / HTTP/1.1\r\nX-Filler: ";
        let mut head = start.to_vec();
        head.resize(len - 4, b'y');
        head.extend_from_slice(b"\r\n\r\n");
        head
    }

    #[test]
    fn the_head_limit_counts_bytes_before_parsing() {
        let fits = head_of(8192);
        let req = parse_head_within(&fits, 8192).unwrap().unwrap();
        assert!(req.body.is_empty());
        for len in [8193, 12_031] {
            let head = head_of(len);
            assert!(
                matches!(
                    parse_head_within(&head, 8192),
                    Err(RequestError::TooLarge(8192))
                ),
                "{len}"
            );
            // Exactly the limit read so far: not yet too large, not complete either.
            assert!(matches!(parse_head_within(&head[..8192], 8192), Ok(None)));
        }
        // Audio right behind a head that fits is its body, however much of it came.
        let mut with_audio = head_of(200);
        with_audio.extend_from_slice(&[0x55; 20_000]);
        let req = parse_head_within(&with_audio, 8192).unwrap().unwrap();
        assert_eq!(req.body.len(), 20_000);
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(
            parse_head(b"\x16\x03\x01\x02\x00garbage\r\n\r\n"),
            Err(RequestError::Malformed(_))
        ));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let req = parse_head(b"GET / HTTP/1.1\r\nX-Forwarded-For: 203.0.113.9, 10.0.0.2\r\n\r\n")
            .unwrap()
            .unwrap();
        let trusted = vec!["127.0.0.1".to_string(), "10.0.0.2".to_string()];
        let proxy = "127.0.0.1".parse().unwrap();
        assert_eq!(
            client_addr(proxy, &req, &trusted),
            "203.0.113.9".parse::<std::net::IpAddr>().unwrap()
        );
        let stranger = "192.0.2.1".parse().unwrap();
        assert_eq!(client_addr(stranger, &req, &trusted), stranger);
        assert_eq!(client_addr(proxy, &req, &[]), proxy);
    }

    #[test]
    fn the_challenge_is_icecasts() {
        let answer = String::from_utf8(unauthorized("You need to authenticate\n")).unwrap();
        assert!(
            answer.starts_with("HTTP/1.0 401 Authentication Required\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains("\r\nWWW-Authenticate: Basic realm=\"Icecast2 Server\"\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with("\r\n\r\nYou need to authenticate\n"),
            "{answer}"
        );
    }

    #[test]
    fn basic_auth_matches_only_the_exact_pair() {
        let with = |auth: &str| {
            parse_head(format!("GET / HTTP/1.0\r\nAuthorization: {auth}\r\n\r\n").as_bytes())
                .unwrap()
                .unwrap()
        };
        // source:hackme
        let req = with("Basic c291cmNlOmhhY2ttZQ==");
        assert!(req.basic_auth_matches("source", "hackme"));
        assert!(!req.basic_auth_matches("source", "hackmf"));
        assert!(!req.basic_auth_matches("admin", "hackme"));
        // source: (empty password) never matches an empty configured password.
        assert!(!with("Basic c291cmNlOg==").basic_auth_matches("source", ""));
        assert!(!with("Bearer x").basic_auth_matches("source", "hackme"));
    }

    #[test]
    fn secrets() {
        assert!(secret_matches("hackme", "hackme"));
        assert!(!secret_matches("hackmf", "hackme"));
        assert!(!secret_matches("", ""));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%e2%82%ac"), "€");
    }

    #[test]
    fn query_decoding_works_on_bytes() {
        // A `%` before a multi-byte character is not an escape, and nothing splits the character.
        assert_eq!(form_decode("%a\u{e9}x"), "%a\u{e9}x".as_bytes());
        assert_eq!(form_decode("%E9+%2B%zz%4"), b"\xe9 +%zz%4");
        let req = parse_head(b"GET /a?p%61ss=x&song=Caf%E9&flag HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.query_param("pass").as_deref(), Some("x"));
        assert_eq!(req.query_bytes("song").as_deref(), Some(&b"Caf\xe9"[..]));
        assert_eq!(req.query_param("song").as_deref(), Some("Caf\u{FFFD}"));
        assert_eq!(req.query_param("flag").as_deref(), Some(""));
        assert_eq!(req.query_param("none"), None);
    }
}
