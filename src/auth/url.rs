//! Listener authentication by URL, as Icecast 2.4's `auth_url`: form-encoded POSTs to the
//! station's backend, whose response headers admit or refuse a listener, so existing backends
//! work unchanged. Every request runs on the executor that needs it (a shard for listeners, the
//! ingest core for mounts) without blocking it, and each executor bounds how many are in flight.
//!
//! Backends are reached over plain `http://` only. Parameters are escaped as Icecast escapes
//! them (everything but ASCII letters and digits), with upper-case hex digits.

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine;
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

use crate::config::{redact_url, AuthConfig, Config, OnError};
use crate::logging::escape;
use crate::url::HttpUrl;

/// Largest response head read from a backend.
const MAX_HEAD: usize = 16 * 1024;
/// Most response header lines looked at.
const MAX_HEADERS: usize = 64;
/// Header a backend explains a refusal in (Icecast's name).
const MESSAGE_HEADER: &str = "icecast-auth-message";

thread_local! {
    /// Backend requests in flight on this executor. Every shard and the ingest core is its
    /// own thread, so this is a per-executor count without any sharing.
    static IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
}

/// One request's place among the executor's in-flight requests, given back on drop.
pub struct Slot(());

impl Slot {
    /// A place, unless `max` requests are already in flight on this executor.
    pub fn take(max: usize) -> Option<Slot> {
        IN_FLIGHT.with(|n| {
            (n.get() < max).then(|| {
                n.set(n.get() + 1);
                Slot(())
            })
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        IN_FLIGHT.with(|n| n.set(n.get().saturating_sub(1)));
    }
}

/// What a backend is told about a listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerParams {
    /// The listener's id (`client=`), as the admin API shows it.
    pub client: u64,
    /// The request URI as sent, query string included (`mount=`): backends read tokens there.
    pub uri: String,
    /// User of the listener's Basic credentials, if any.
    pub user: String,
    /// Password of the listener's Basic credentials, if any.
    pub pass: String,
    /// The listener's address.
    pub ip: String,
    /// The listener's `User-Agent` (`-` when it sent none, as Icecast does).
    pub agent: String,
    /// Passed request headers: (parameter name with its prefix, value).
    pub headers: Vec<(String, String)>,
}

impl ListenerParams {
    /// The parameters of a listener's request.
    pub fn from_request(
        request: &crate::http::Request,
        auth: &AuthConfig,
        client: u64,
        ip: std::net::IpAddr,
    ) -> Self {
        let (user, pass) = request.basic_credentials().unwrap_or_default();
        let uri = if request.query.is_empty() {
            request.path.clone()
        } else {
            format!("{}?{}", request.path, request.query)
        };
        ListenerParams {
            client,
            uri,
            user,
            pass,
            ip: ip.to_string(),
            agent: request.header("user-agent").unwrap_or("-").to_string(),
            headers: auth
                .headers
                .iter()
                .filter_map(|name| {
                    let value = request.header(name)?;
                    Some((format!("{}{name}", auth.headers_prefix), value.to_string()))
                })
                .collect(),
        }
    }
}

/// A value escaped for a form body.
fn enc(value: &str) -> percent_encoding::PercentEncode<'_> {
    utf8_percent_encode(value, NON_ALPHANUMERIC)
}

/// Body of `action=listener_add`, field for field as Icecast 2.4 sends it, with the
/// forwarded headers.
pub fn listener_add_body(server: &str, port: u16, p: &ListenerParams) -> String {
    let mut body = listener_body("listener_add", server, port, p, None);
    for (name, value) in &p.headers {
        let _ = write!(body, "&{}={}", enc(name), enc(value));
    }
    body
}

/// Body of `action=listener_remove`: `duration` is the listener's time connected in seconds.
pub fn listener_remove_body(server: &str, port: u16, p: &ListenerParams, duration: u64) -> String {
    listener_body("listener_remove", server, port, p, Some(duration))
}

/// The fields both listener actions carry, in Icecast's order (`duration` after `pass`).
fn listener_body(
    action: &str,
    server: &str,
    port: u16,
    p: &ListenerParams,
    duration: Option<u64>,
) -> String {
    let duration = duration.map_or(String::new(), |d| format!("&duration={d}"));
    format!(
        "action={action}&server={}&port={port}&client={}&mount={}&user={}&pass={}{duration}&ip={}&agent={}",
        enc(server),
        p.client,
        enc(&p.uri),
        enc(&p.user),
        enc(&p.pass),
        enc(&p.ip),
        enc(&p.agent),
    )
}

/// Body of `action=mount_add` or `action=mount_remove`.
pub fn mount_body(action: &str, mount: &str, server: &str, port: u16) -> String {
    format!(
        "action={action}&mount={}&server={}&port={port}",
        enc(mount),
        enc(server)
    )
}

/// What a backend answered, as far as it matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The response status.
    pub status: u16,
    /// Whether the admitting header (`auth_header`) was there.
    pub admitted: bool,
    /// Seconds the listener may stay (`timelimit_header`).
    pub time_limit: Option<u64>,
    /// `icecast-auth-message`, raw (escape before logging).
    pub message: Option<String>,
}

/// Why a backend gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The URL in the configuration cannot be used.
    #[error("unusable backend URL")]
    Url,
    /// Name resolution, connection or transfer failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// No complete answer within the timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer is not an HTTP response head.
    #[error("malformed response: {0}")]
    Malformed(String),
}

/// Reads what matters from a complete response head; `Ok(None)` while it is partial.
pub fn parse_answer(head: &[u8], auth: &AuthConfig) -> Result<Option<Answer>, BackendError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(BackendError::Malformed(e.to_string())),
    }
    let (admit_name, admit_value) = auth.admit_header();
    let mut answer = Answer {
        status: response.code.unwrap_or(0),
        ..Answer::default()
    };
    for header in response.headers.iter() {
        let value = String::from_utf8_lossy(header.value);
        let value = value.trim();
        if header.name.eq_ignore_ascii_case(admit_name) && value.eq_ignore_ascii_case(admit_value) {
            answer.admitted = true;
        } else if header.name.eq_ignore_ascii_case(auth.timelimit_name()) {
            answer.time_limit = value.parse().ok();
        } else if header.name.eq_ignore_ascii_case(MESSAGE_HEADER) {
            answer.message = Some(value.to_string());
        }
    }
    Ok(Some(answer))
}

/// POSTs `body` to `url` and reads the response head, all within the block's timeout.
/// `listener_credentials` are sent as Basic auth when neither the block nor the URL has
/// any, as Icecast does.
pub async fn post(
    url: &str,
    auth: &AuthConfig,
    body: &str,
    listener_credentials: Option<(&str, &str)>,
) -> Result<Answer, BackendError> {
    let target = HttpUrl::parse(url).map_err(|_| BackendError::Url)?;
    let timeout = auth.timeout();
    let exchange = async {
        let mut stream = connect(&target, timeout).await?;
        let credentials = if !auth.username.is_empty() {
            Some(format!("{}:{}", auth.username, auth.password))
        } else {
            target
                .credentials
                .as_ref()
                .map(|c| format!("{}:{}", c.user, c.password))
                .or_else(|| {
                    listener_credentials
                        .filter(|(user, _)| !user.is_empty())
                        .map(|(user, pass)| format!("{user}:{pass}"))
                })
        };
        let host = target.host_header();
        let mut request = format!(
            "POST {} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n",
            target.path,
            crate::http::server_id(),
            body.len()
        );
        if let Some(credentials) = credentials {
            let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
            let _ = write!(request, "Authorization: Basic {encoded}\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(BackendError::Malformed(
                    "connection closed before the response head ended".into(),
                ));
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(answer) = parse_answer(&head, auth)? {
                return Ok(answer);
            }
            if head.len() > MAX_HEAD {
                return Err(BackendError::Malformed("response head too large".into()));
            }
        }
    };
    let deadline = async {
        Timer::new(timeout).await;
        Err(BackendError::Timeout(timeout))
    };
    future::or(exchange, deadline).await
}

/// Connects to the URL's host: a literal address directly, a name resolved on the executor's
/// helper thread (so a slow resolver never stalls the executor), its addresses tried in turn.
async fn connect(target: &HttpUrl, timeout: Duration) -> Result<TcpStream, BackendError> {
    let addrs = match target.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => {
            let target = target.clone();
            glommio::executor()
                .spawn_blocking(move || target.socket_addrs().map(Iterator::collect::<Vec<_>>))
                .await?
        }
    };
    let mut failure = std::io::Error::other("the backend's name has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout).await {
            Ok(stream) => return Ok(stream),
            Err(e) => failure = std::io::Error::other(format!("{addr}: {e}")),
        }
    }
    Err(failure.into())
}

/// What to do with a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let it in, for at most this long when the backend set a limit.
    Admit(Option<Duration>),
    /// Refuse it: 401.
    Refuse,
    /// Too many checks in flight on this executor: 503.
    Busy,
}

/// Asks the block's `listener_add` URL about a listener; without one every listener is let in.
pub async fn check_listener(
    config: &Config,
    listen_port: u16,
    auth: &AuthConfig,
    params: &ListenerParams,
) -> Decision {
    if auth.listener_add.is_empty() {
        return Decision::Admit(None);
    }
    let Some(_slot) = Slot::take(auth.max_pending) else {
        metrics::counter!("cycast_auth_requests_total", "action" => "listener_add", "result" => "busy")
            .increment(1);
        return Decision::Busy;
    };
    let body = listener_add_body(config.public_host(), listen_port, params);
    let credentials = Some((params.user.as_str(), params.pass.as_str()));
    let result = post(&auth.listener_add, auth, &body, credentials).await;
    let mount = escape(&params.uri);
    let (decision, outcome) = match result {
        Ok(answer) if answer.admitted => {
            if let Some(message) = &answer.message {
                tracing::info!(mount = %mount, client = params.client, message = %escape(message), "listener admitted by auth backend");
            }
            let limit = answer.time_limit.map(Duration::from_secs);
            (Decision::Admit(limit), "admitted")
        }
        // A server error is no verdict on the listener.
        Ok(answer) if answer.status < 500 => {
            tracing::info!(
                mount = %mount,
                client = params.client,
                ip = %params.ip,
                status = answer.status,
                message = %escape(answer.message.as_deref().unwrap_or("")),
                "listener refused by auth backend"
            );
            (Decision::Refuse, "refused")
        }
        Ok(answer) => {
            tracing::warn!(mount = %mount, status = answer.status, message = %escape(answer.message.as_deref().unwrap_or("")), on_error = ?auth.on_error, "auth backend failed");
            (on_error(auth), "error")
        }
        Err(e) => {
            tracing::warn!(mount = %mount, url = %redact_url(&auth.listener_add), on_error = ?auth.on_error, "auth backend unavailable: {}", escape(&e.to_string()));
            (on_error(auth), "error")
        }
    };
    metrics::counter!("cycast_auth_requests_total", "action" => "listener_add", "result" => outcome)
        .increment(1);
    decision
}

fn on_error(auth: &AuthConfig) -> Decision {
    match auth.on_error {
        OnError::Allow => Decision::Admit(None),
        OnError::Deny => Decision::Refuse,
    }
}

/// A listener let in under an `auth` block, remembered until it leaves.
#[derive(Debug, Clone)]
pub struct ListenerSession {
    /// The mount whose block let it in.
    pub mount: String,
    /// What the backend was told about it.
    pub params: ListenerParams,
}

/// Tells the `listener_remove` URL in force for the session's mount that the listener left
/// after `connected`, without waiting for the answer; dropped (and counted) when the
/// executor already has `max_pending` requests in flight.
pub fn listener_left(
    config: &Config,
    listen_port: u16,
    session: ListenerSession,
    connected: Duration,
) {
    let Some(auth) = config.auth_for(&session.mount) else {
        return;
    };
    if auth.listener_remove.is_empty() {
        return;
    }
    let body = listener_remove_body(
        config.public_host(),
        listen_port,
        &session.params,
        connected.as_secs(),
    );
    let url = auth.listener_remove.clone();
    notify(
        auth.clone(),
        "listener_remove",
        url,
        body,
        Some(session.params),
    );
}

/// Tells the `mount_add` / `mount_remove` URL in force for `mount` that its source came or
/// went, without waiting for the answer.
pub fn mount_changed(config: &Config, listen_port: u16, mount: &str, live: bool) {
    let Some(auth) = config.auth_for(mount) else {
        return;
    };
    let (action, url) = if live {
        ("mount_add", &auth.mount_add)
    } else {
        ("mount_remove", &auth.mount_remove)
    };
    if url.is_empty() {
        return;
    }
    let body = mount_body(action, mount, config.public_host(), listen_port);
    notify(auth.clone(), action, url.clone(), body, None);
}

/// POSTs one notice to `url` in the background of the current executor.
fn notify(
    auth: AuthConfig,
    action: &'static str,
    url: String,
    body: String,
    listener: Option<ListenerParams>,
) {
    let Some(slot) = Slot::take(auth.max_pending) else {
        metrics::counter!("cycast_auth_requests_total", "action" => action, "result" => "dropped")
            .increment(1);
        tracing::warn!(
            action,
            "auth backend notice dropped: too many requests in flight"
        );
        return;
    };
    glommio::spawn_local(async move {
        let _slot = slot;
        let credentials = listener
            .as_ref()
            .map(|p| (p.user.as_str(), p.pass.as_str()));
        let outcome = match post(&url, &auth, &body, credentials).await {
            Ok(_) => "sent",
            Err(e) => {
                tracing::warn!(action, url = %redact_url(&url), "auth backend notice failed: {}", escape(&e.to_string()));
                "error"
            }
        };
        metrics::counter!("cycast_auth_requests_total", "action" => action, "result" => outcome)
            .increment(1);
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ListenerParams {
        ListenerParams {
            client: 7,
            uri: "/live?token=a b&x=é".into(),
            user: "bob".into(),
            pass: "p:w&d".into(),
            ip: "::1".into(),
            agent: "VLC/3.0".into(),
            headers: vec![("ClientHeader.Referer".into(), "http://r/?a=1".into())],
        }
    }

    #[test]
    fn bodies_are_escaped_as_icecast_escapes_them() {
        assert_eq!(
            listener_add_body("radio.example", 8001, &params()),
            "action=listener_add&server=radio%2Eexample&port=8001&client=7\
             &mount=%2Flive%3Ftoken%3Da%20b%26x%3D%C3%A9&user=bob&pass=p%3Aw%26d&ip=%3A%3A1\
             &agent=VLC%2F3%2E0&ClientHeader%2EReferer=http%3A%2F%2Fr%2F%3Fa%3D1"
        );
        assert_eq!(
            listener_remove_body("h", 80, &params(), 42),
            "action=listener_remove&server=h&port=80&client=7\
             &mount=%2Flive%3Ftoken%3Da%20b%26x%3D%C3%A9&user=bob&pass=p%3Aw%26d&duration=42\
             &ip=%3A%3A1&agent=VLC%2F3%2E0"
        );
        assert_eq!(
            mount_body("mount_add", "/live", "h", 8001),
            "action=mount_add&mount=%2Flive&server=h&port=8001"
        );
    }

    #[test]
    fn answers() {
        let auth = AuthConfig::default();
        let answer = parse_answer(
            b"HTTP/1.1 200 OK\r\nIcecast-Auth-User: 1\r\nicecast-auth-timelimit: 30\r\nicecast-auth-message: hi\r\n\r\nbody",
            &auth,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            answer,
            Answer {
                status: 200,
                admitted: true,
                time_limit: Some(30),
                message: Some("hi".into())
            }
        );
        let refused = parse_answer(b"HTTP/1.0 200 OK\r\nicecast-auth-user: 0\r\n\r\n", &auth)
            .unwrap()
            .unwrap();
        assert!(!refused.admitted);
        assert!(parse_answer(b"HTTP/1.0 200 OK\r\nicecast-au", &auth)
            .unwrap()
            .is_none());
        assert!(parse_answer(b"<html>nope</html>\r\n\r\n", &auth).is_err());
    }

    #[test]
    fn slots_are_bounded_and_given_back() {
        let a = Slot::take(2).unwrap();
        let _b = Slot::take(2).unwrap();
        assert!(Slot::take(2).is_none());
        drop(a);
        assert!(Slot::take(2).is_some());
    }
}
