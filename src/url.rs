//! `http://` and `https://` URLs as relays, auth backends and `cycast-load` are given them:
//! scheme, host, port, path and query, and the optional `user:password@` that becomes Basic
//! auth to the server named.
//!
//! Hand-written rather than the `url` crate: only `http://` and `https://` with these parts are
//! accepted, and `url` would bring international domain names, every scheme and relative
//! references (and their Unicode tables) for none of that. `http::Uri` hides the user info
//! that relays need. Percent-decoding is the `percent-encoding` crate's.
//!
//! A leaf: it imports nothing from the crate, so any layer may use it.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr, ToSocketAddrs};

use base64::Engine as _;

/// What a password is shown as in logs and status.
const REDACTED: &str = "***";

/// Why a URL was refused. No variant quotes the credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The scheme is not `http://` or `https://`.
    #[error("only http:// and https:// URLs are supported")]
    Scheme,
    /// A space or control character, which would break the request line.
    #[error("the URL holds a space or a control character")]
    Control,
    /// Nothing between `http://` (or `@`) and the path.
    #[error("the URL names no host")]
    NoHost,
    /// The host is neither a name, an IPv4 address nor a bracketed IPv6 address.
    #[error("bad host {0:?}")]
    Host(String),
    /// The port is not a number from 1 to 65535.
    #[error("bad port {0:?}")]
    Port(String),
    /// The user or password is not UTF-8 once percent-decoded.
    #[error("the credentials are not UTF-8 once percent-decoded")]
    Credentials,
}

/// The `user:password@` part of a URL, percent-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password; empty when the URL gives only a user.
    pub password: String,
}

impl Credentials {
    /// The `Authorization` header value: `Basic` and base64 of `user:password`.
    pub fn basic_authorization(&self) -> String {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        format!("Basic {token}")
    }
}

/// Never prints the password, so a stray `{:?}` cannot leak it.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &REDACTED)
            .finish()
    }
}

/// A parsed `http[s]://[user[:password]@]host[:port][/path][?query]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`: the connection speaks TLS.
    pub tls: bool,
    /// Host name or address, IPv6 without its brackets.
    pub host: String,
    /// Port; 80 (443 for `https://`) when the URL names none.
    pub port: u16,
    /// Path and query as written, the request target: starts with `/`; no fragment.
    pub path: String,
    /// User and password, when the URL carries them.
    pub credentials: Option<Credentials>,
}

impl HttpUrl {
    /// Parses `url`. The scheme is matched in any case; a fragment is dropped, as HTTP never
    /// sends it.
    pub fn parse(url: &str) -> Result<HttpUrl, UrlError> {
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(UrlError::Control);
        }
        let scheme = |name: &str| {
            url.get(..name.len())
                .filter(|s| s.eq_ignore_ascii_case(name))
                .map(|_| &url[name.len()..])
        };
        let (tls, rest) = match (scheme("http://"), scheme("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(UrlError::Scheme),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(authority_end);
        let path = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{target}")
        };
        // The last `@` ends the user info: a password may hold an unescaped `@`.
        let (credentials, host_port) = match authority.rfind('@') {
            Some(at) => (Some(credentials(&authority[..at])?), &authority[at + 1..]),
            None => (None, authority),
        };
        let (host, port) = host_and_port(host_port, if tls { 443 } else { 80 })?;
        Ok(HttpUrl {
            tls,
            host,
            port,
            path,
            credentials,
        })
    }

    /// The `Host` header value: the host (IPv6 in brackets), and the port unless it is the
    /// scheme's default.
    pub fn host_header(&self) -> String {
        let host = self.bracketed_host();
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The addresses the host resolves to (a name is looked up, blocking).
    pub fn socket_addrs(&self) -> std::io::Result<impl Iterator<Item = SocketAddr>> {
        (self.host.as_str(), self.port).to_socket_addrs()
    }

    /// The URL for logs and status pages: the password, if any, as `***`. Not escaped; the
    /// user name is as decoded, so callers escape it with the rest.
    pub fn redacted(&self) -> String {
        let user_info = match &self.credentials {
            Some(c) if c.password.is_empty() => format!("{}@", c.user),
            Some(c) => format!("{}:{REDACTED}@", c.user),
            None => String::new(),
        };
        format!(
            "{}://{user_info}{}:{}{}",
            if self.tls { "https" } else { "http" },
            self.bracketed_host(),
            self.port,
            self.path
        )
    }

    /// The scheme's port: 80, or 443 for `https://`.
    fn default_port(&self) -> u16 {
        if self.tls {
            443
        } else {
            80
        }
    }

    /// The host as it goes in a URL or `Host` header.
    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }
}

/// `user[:password]`, each percent-decoded.
fn credentials(user_info: &str) -> Result<Credentials, UrlError> {
    let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| UrlError::Credentials)
    };
    Ok(Credentials {
        user: decode(user)?,
        password: decode(password)?,
    })
}

/// `host[:port]` or `[v6][:port]`; `default` when no port is named.
fn host_and_port(host_port: &str, default: u16) -> Result<(String, u16), UrlError> {
    let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
        let (address, after) = v6
            .split_once(']')
            .ok_or_else(|| UrlError::Host(host_port.to_string()))?;
        address
            .parse::<Ipv6Addr>()
            .map_err(|_| UrlError::Host(address.to_string()))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| UrlError::Host(host_port.to_string()))?,
            ),
        };
        (address, port)
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    let name_ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
    if !name_ok {
        return Err(UrlError::Host(host.to_string()));
    }
    let port = match port {
        // RFC 3986 allows an empty port: the default.
        None | Some("") => default,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| UrlError::Port(p.to_string()))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, u16, String) {
        let u = HttpUrl::parse(url).unwrap();
        (u.host, u.port, u.path)
    }

    #[test]
    fn host_port_and_target() {
        assert_eq!(
            parts("http://127.0.0.1:8000/stream"),
            ("127.0.0.1".into(), 8000, "/stream".into())
        );
        assert_eq!(
            parts("http://example.test/live?x=1&y"),
            ("example.test".into(), 80, "/live?x=1&y".into())
        );
        assert_eq!(parts("http://host:9000"), ("host".into(), 9000, "/".into()));
        assert_eq!(
            parts("HTTP://host?q#frag"),
            ("host".into(), 80, "/?q".into())
        );
        assert_eq!(parts("http://host:/a"), ("host".into(), 80, "/a".into()));
        let u = HttpUrl::parse("http://localhost").unwrap();
        assert_eq!(u.credentials, None);
        assert_eq!(u.host_header(), "localhost");
        assert!(!u.tls);
    }

    #[test]
    fn https_defaults_to_port_443() {
        let u = HttpUrl::parse("HTTPS://localhost/live").unwrap();
        assert!(u.tls);
        assert_eq!((u.port, u.host_header()), (443, "localhost".to_string()));
        let u = HttpUrl::parse("https://u:pw@localhost:8443/live").unwrap();
        assert_eq!(u.host_header(), "localhost:8443");
        assert_eq!(u.redacted(), "https://u:***@localhost:8443/live");
    }

    #[test]
    fn ipv6_in_brackets() {
        let u = HttpUrl::parse("http://[::1]:8000/stream").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8000));
        assert_eq!(u.host_header(), "[::1]:8000");
        assert_eq!(
            u.socket_addrs().unwrap().next(),
            Some("[::1]:8000".parse().unwrap())
        );
        let u = HttpUrl::parse("http://[2001:db8::2]/m").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::2", 80));
        assert_eq!(u.host_header(), "[2001:db8::2]");
    }

    #[test]
    fn credentials_are_percent_decoded_and_split_at_the_first_colon() {
        let u = HttpUrl::parse("http://source:hack:me@127.0.0.1:8000/live.mp3").unwrap();
        let c = u.credentials.clone().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("source", "hack:me")
        );
        assert_eq!(
            (u.host.as_str(), u.path.as_str()),
            ("127.0.0.1", "/live.mp3")
        );

        let u = HttpUrl::parse("http://dj%40home:p%40ss%3Aw%20rd@[::1]:8000/m").unwrap();
        let c = u.credentials.clone().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("dj@home", "p@ss:w rd")
        );
        assert_eq!(c.basic_authorization(), "Basic ZGpAaG9tZTpwQHNzOncgcmQ=");

        // An unescaped `@` in the password: the last one ends the user info.
        let u = HttpUrl::parse("http://u:a@b@host/").unwrap();
        assert_eq!(u.credentials.unwrap().password, "a@b");
        assert_eq!(u.host, "host");

        let u = HttpUrl::parse("http://relay@host/").unwrap();
        let c = u.credentials.clone().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("relay", ""));
    }

    #[test]
    fn the_password_never_shows() {
        let u = HttpUrl::parse("http://dj:s3cret%21@[::1]:8000/m?x=1").unwrap();
        assert_eq!(u.redacted(), "http://dj:***@[::1]:8000/m?x=1");
        assert!(!format!("{u:?}").contains("s3cret"), "{u:?}");
        let u = HttpUrl::parse("http://dj@host/m").unwrap();
        assert_eq!(u.redacted(), "http://dj@host:80/m");
        let u = HttpUrl::parse("http://host/m").unwrap();
        assert_eq!(u.redacted(), "http://host:80/m");
        // Errors name the part at fault, never the password.
        let e = HttpUrl::parse("http://u:s3cret@host:x/").unwrap_err();
        assert_eq!(e, UrlError::Port("x".into()));
    }

    #[test]
    fn bad_input_is_an_error() {
        let cases = [
            ("ftp://x/y", UrlError::Scheme),
            ("http:/", UrlError::Scheme),
            ("", UrlError::Scheme),
            ("http://", UrlError::NoHost),
            ("http://:80/", UrlError::NoHost),
            ("http://u:p@/x", UrlError::NoHost),
            ("http://x:port/", UrlError::Port("port".into())),
            ("http://x:0/", UrlError::Port("0".into())),
            ("http://x:65536/", UrlError::Port("65536".into())),
            ("http://x:1:2/", UrlError::Port("1:2".into())),
            ("http://[::1/", UrlError::Host("[::1".into())),
            ("http://[zz::1]:80/", UrlError::Host("zz::1".into())),
            ("http://[::1]x/", UrlError::Host("[::1]x".into())),
            ("http://ho%st/", UrlError::Host("ho%st".into())),
            ("http://host/a b", UrlError::Control),
            ("http://host/\r\nX: y", UrlError::Control),
            ("http://u:%ff@host/", UrlError::Credentials),
        ];
        for (url, error) in cases {
            assert_eq!(HttpUrl::parse(url), Err(error), "{url:?}");
        }
    }
}
